// The official `openai` npm client against freekv's HTTP API (tests/http/http_api.sh starts the
// services): a completion, a streamed one with its usage chunk, the models list, and an error that the
// client must surface as an APIError with the HTTP status. Exits non-zero, saying what differed.
// Usage: node openai_client.mjs BASE_URL API_KEY MODEL
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const prompt = "The key is 48213. Remember it. What is the key? The key is";
let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok" : "FAILED"}: ${what}`);
  if (!ok) failures++;
};

const plain = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0 });
check(plain.object === "text_completion" && plain.choices.length === 1, "completion object with one choice");
check(plain.usage.completion_tokens === 12, `12 completion tokens (${plain.usage.completion_tokens})`);
console.log(`  text: ${JSON.stringify(plain.choices[0].text)}`);

const stream = await client.completions.create({
  model, prompt, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = "", finish = null, usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    text += choice.text;
    if (choice.finish_reason) finish = choice.finish_reason;
  }
}
check(text === plain.choices[0].text, "the streamed text equals the plain one (greedy)");
check(finish === plain.choices[0].finish_reason, `finish_reason ${finish}`);
check(usage !== null && usage.completion_tokens === 12, "the usage chunk");

const models = await client.models.list();
check(models.data.some((m) => m.id === model), `/v1/models lists ${model}`);

try {
  await client.completions.create({ model, prompt, max_tokens: 4, n: 2 });
  check(false, "n = 2 refused");
} catch (e) {
  check(e instanceof OpenAI.APIError && e.status === 400 && e.param === "n", `n = 2 refused with 400 (${e.status})`);
}
try {
  await client.completions.create({ model: "no-such-model", prompt, max_tokens: 4 });
  check(false, "an unknown model refused");
} catch (e) {
  check(e instanceof OpenAI.NotFoundError, `an unknown model refused with 404 (${e.status})`);
}
const wrongKey = new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 });
try {
  await wrongKey.models.list();
  check(false, "a wrong key refused");
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError, `a wrong key refused with 401 (${e.status})`);
}
process.exit(failures === 0 ? 0 : 1);
