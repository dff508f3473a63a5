// `freekv mkmodel`: a deterministic random model in Hugging Face format.
#include "common/file_util.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/random_model.h"
#include "worker/tokenizer/tokenizer.h"

#include <filesystem>

namespace freekv {

int cmd_mkmodel(int argc, char** argv) {
  std::string arch = "llama", out, tokenizer, dtype = "bf16", rope_scaling = "none", chat_template;
  int64_t layers = 4, hidden = 256, heads = 4, kv_heads = 2, head_dim = 64, intermediate = 768, vocab = 2048,
          seed = 0, max_positions = 32768, shards = 1, rope_original = 8192;
  double rope_theta = 500000, rope_factor = 8, rope_low = 1, rope_high = 4;
  bool tie = false;
  ArgParser p("freekv mkmodel --arch llama|qwen2|qwen3|mistral --out DIR [geometry] (--vocab N | --tokenizer FILE) --seed S",
              "Writes a deterministic random model (config.json, safetensors, tokenizer.json, tokenizer_config.json,\n"
              "generation_config.json). With --vocab, a byte-level BPE tokenizer of that size is trained on a built-in\n"
              "corpus; with --tokenizer, that tokenizer.json is used and sets the vocabulary.");
  p.add_string("arch", &arch, "llama, qwen2 (q/k/v bias), qwen3 (q/k norm) or mistral");
  p.add_string("out", &out, "output directory", true);
  p.add_int("layers", &layers, "decoder layers");
  p.add_int("hidden", &hidden, "hidden size");
  p.add_int("heads", &heads, "query heads");
  p.add_int("kv-heads", &kv_heads, "KV heads (divides --heads)");
  p.add_int("head-dim", &head_dim, "head dimension");
  p.add_int("intermediate", &intermediate, "MLP intermediate size");
  p.add_int("vocab", &vocab, "vocabulary size of the generated tokenizer");
  p.add_string("tokenizer", &tokenizer, "use this tokenizer.json instead of generating one");
  p.add_int("seed", &seed, "random seed");
  p.add_string("dtype", &dtype, "weight dtype: bf16, f16 or f32");
  p.add_int("max-positions", &max_positions, "max_position_embeddings");
  p.add_double("rope-theta", &rope_theta, "RoPE base");
  p.add_string("rope-scaling", &rope_scaling, "none, linear or llama3");
  p.add_double("rope-factor", &rope_factor, "RoPE scaling factor (linear, llama3)");
  p.add_double("rope-low-freq-factor", &rope_low, "llama3 low_freq_factor");
  p.add_double("rope-high-freq-factor", &rope_high, "llama3 high_freq_factor");
  p.add_int("rope-original-positions", &rope_original, "llama3 original_max_position_embeddings");
  p.add_bool("tie-embeddings", &tie, "share the embedding with the output head");
  p.add_int("shards", &shards, "split the weights over this many safetensors files");
  p.add_string("chat-template", &chat_template, "a Jinja chat template file for tokenizer_config.json (none by default)");
  if (int rc = handle_parse_result(p, p.parse(argc, argv)); rc >= 0) return rc;

  RandomModelSpec spec;
  ModelConfig& c = spec.config;
  if (arch == "llama") c.arch = ModelArch::kLlama;
  else if (arch == "qwen2") c.arch = ModelArch::kQwen2;
  else if (arch == "qwen3") c.arch = ModelArch::kQwen3;
  else if (arch == "mistral") c.arch = ModelArch::kMistral;
  else return report_error("mkmodel", absl::InvalidArgumentError("--arch must be llama, qwen2, qwen3 or mistral, got '" + arch + "'"));
  c.arch_name = std::string(model_arch_hf_name(c.arch));
  c.qkv_bias = c.arch == ModelArch::kQwen2;
  c.qk_norm = c.arch == ModelArch::kQwen3;
  if (layers < 1 || hidden < 1 || heads < 1 || kv_heads < 1 || intermediate < 1 || head_dim < 2 || head_dim % 2 != 0) {
    return report_error("mkmodel", absl::InvalidArgumentError("sizes must be positive and --head-dim even"));
  }
  if (heads % kv_heads != 0) {
    return report_error("mkmodel", absl::InvalidArgumentError("--heads must be a multiple of --kv-heads"));
  }
  c.n_layers = int(layers);
  c.hidden = int(hidden);
  c.n_heads = int(heads);
  c.n_kv_heads = int(kv_heads);
  c.head_dim = int(head_dim);
  c.intermediate = int(intermediate);
  c.max_positions = int(max_positions);
  c.rope_theta = rope_theta;
  c.rms_eps = 1e-5;
  c.tie_embeddings = tie;
  if (dtype == "bf16") c.dtype = DType::kBF16;
  else if (dtype == "f16") c.dtype = DType::kF16;
  else if (dtype == "f32") c.dtype = DType::kF32;
  else return report_error("mkmodel", absl::InvalidArgumentError("--dtype must be bf16, f16 or f32, got '" + dtype + "'"));
  if (rope_scaling == "linear") {
    c.rope_scaling.kind = RopeScalingKind::kLinear;
  } else if (rope_scaling == "llama3") {
    c.rope_scaling.kind = RopeScalingKind::kLlama3;
    c.rope_scaling.low_freq_factor = rope_low;
    c.rope_scaling.high_freq_factor = rope_high;
    c.rope_scaling.original_max_position_embeddings = int(rope_original);
  } else if (rope_scaling != "none") {
    return report_error("mkmodel", absl::InvalidArgumentError("--rope-scaling must be none, linear or llama3"));
  }
  c.rope_scaling.factor = c.rope_scaling.kind == RopeScalingKind::kNone ? 1.0 : rope_factor;
  if (!tokenizer.empty()) {
    if (std::filesystem::is_directory(tokenizer)) tokenizer = (std::filesystem::path(tokenizer) / "tokenizer.json").string();
    auto text = read_file(tokenizer);
    if (!text.ok()) return report_error("mkmodel", text.status());
    spec.tokenizer_json = *text;
  } else {
    auto text = make_bpe_tokenizer_json(int(vocab));
    if (!text.ok()) return report_error("mkmodel", text.status());
    spec.tokenizer_json = *text;
  }
  spec.seed = uint64_t(seed);
  spec.shards = int(shards);
  if (!chat_template.empty()) {
    auto text = read_file(chat_template);
    if (!text.ok()) return report_error("mkmodel", text.status());
    spec.chat_template = *text;
  }
  if (absl::Status s = write_random_model(spec, out); !s.ok()) return report_error("mkmodel", s);
  std::printf("freekv mkmodel: wrote %s\n", out.c_str());
  return 0;
}

}  // namespace freekv
