// The official `openai` npm client against freekv's HTTP API (tests/http/http_api.sh starts the
// services). completions: a completion, a streamed one with its usage chunk, the models list, and errors
// the client must surface as APIErrors with the HTTP status. chat: a chat completion, a streamed one
// equal to it, a second turn sent whole, and an error. Exits non-zero, saying what differed.
// Usage: node openai_client.mjs BASE_URL API_KEY MODEL completions|chat
import OpenAI from "openai";

const [baseURL, apiKey, model, mode] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const prompt = "The key is 48213. Remember it. What is the key? The key is";
let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok" : "FAILED"}: ${what}`);
  if (!ok) failures++;
};

if (mode === "chat") {
  await chat();
  process.exit(failures === 0 ? 0 : 1);
}

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

async function chat() {
  const messages = [
    { role: "system", content: "You are brief." },
    { role: "user", content: "Name a colour." },
  ];
  const plain = await client.chat.completions.create({ model, messages, max_completion_tokens: 10, temperature: 0 });
  const reply = plain.choices[0].message;
  check(plain.object === "chat.completion" && reply.role === "assistant", "chat.completion with an assistant message");
  check(plain.usage.completion_tokens > 0 && plain.usage.completion_tokens <= 10,
        `1..10 completion tokens (${plain.usage.completion_tokens})`);
  console.log(`  reply: ${JSON.stringify(reply.content)}`);

  const stream = await client.chat.completions.create({
    model, messages, max_completion_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = "", role = null, finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      if (choice.delta.role) role = choice.delta.role;
      text += choice.delta.content ?? "";
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  check(role === "assistant", "the stream opens with the assistant role");
  check(text === reply.content, "the streamed reply equals the plain one (greedy)");
  check(finish === plain.choices[0].finish_reason, `finish_reason ${finish}`);
  check(usage !== null && usage.prompt_tokens === plain.usage.prompt_tokens, "the usage chunk");

  const next = await client.chat.completions.create({
    model, max_tokens: 6, temperature: 0,
    messages: [...messages, { role: "assistant", content: reply.content }, { role: "user", content: "Another?" }],
  });
  check(next.usage.prompt_tokens > plain.usage.prompt_tokens, "a second turn sent whole counts the whole conversation");

  try {
    await client.chat.completions.create({ model, messages: [] });
    check(false, "an empty conversation refused");
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.param === "messages", `an empty conversation refused with 400 (${e.status})`);
  }
}
