// config.json: each architecture's flags and Hugging Face defaults, rope scaling, every kind of bad
// config (an error naming the file and the key), and the writer's round trip.
#include "worker/model/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace freekv {
namespace {

namespace fs = std::filesystem;

::testing::AssertionResult Contains(absl::string_view text, absl::string_view part) {
  if (text.find(part) != absl::string_view::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\"\n    does not contain \"" << part << "\"";
}

std::string corpus(const std::string& name) {
  std::ifstream in(fs::path(FREEKV_SOURCE_DIR) / "tests/fuzz/corpus/config" / name);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

ModelConfig parse_ok(const std::string& text) {
  auto c = parse_model_config(text, "config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig{};
}

// The message of a config that must fail with INVALID_ARGUMENT.
std::string parse_error(const std::string& text, const std::string& source = "cfg/config.json") {
  auto c = parse_model_config(text, source);
  EXPECT_FALSE(c.ok()) << text;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  std::string m(c.status().message());
  EXPECT_TRUE(Contains(m, source));
  return m;
}

// A minimal valid Llama config with `extra` appended (a later key overrides an earlier one).
std::string tiny(const std::string& extra = "", const std::string& arch = "LlamaForCausalLM") {
  std::string s = R"({"architectures": [")" + arch + R"("], "hidden_size": 256, "intermediate_size": 512,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 1000)";
  if (!extra.empty()) s += ", " + extra;
  return s + "}";
}

TEST(Config, Llama31WithLlama3RopeScaling) {
  ModelConfig c = parse_ok(corpus("llama3_1_8b_instruct.json"));
  EXPECT_EQ(c.arch, ModelArch::kLlama);
  EXPECT_EQ(c.arch_name, "LlamaForCausalLM");
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.hidden, 4096);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.intermediate, 14336);
  EXPECT_EQ(c.vocab, 128256);
  EXPECT_EQ(c.max_positions, 131072);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.bos_token_id, 128000);
}

TEST(Config, TinyLlamaAndLinearRope) {
  ModelConfig c = parse_ok(corpus("tinyllama_1_1b.json"));
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::kNone);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});

  c = parse_ok(corpus("llama_linear_rope.json"));  // the old "type" key
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::kLinear);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_TRUE(c.qkv_bias);  // attention_bias: true
  EXPECT_TRUE(c.o_bias);    // ... biases o_proj as well in transformers' LlamaAttention
  EXPECT_EQ(c.dtype, DType::kF16);

  c = parse_ok(tiny(R"("rope_scaling": {"rope_type": "linear", "factor": 2})"));
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::kLinear);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  c = parse_ok(tiny(R"("rope_scaling": {"rope_type": "default"})"));
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::kNone);
}

TEST(Config, Qwen2) {
  ModelConfig c = parse_ok(corpus("qwen2_5_0_5b_instruct.json"));
  EXPECT_EQ(c.arch, ModelArch::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.n_heads, 14);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-6);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{151645});
  // Qwen2 biases q/k/v whatever attention_bias says (the key is not Qwen2's).
  EXPECT_TRUE(
      parse_ok(tiny(R"("attention_bias": false, "num_key_value_heads": 2)", "Qwen2ForCausalLM")).qkv_bias);
}

TEST(Config, Qwen3) {
  ModelConfig c = parse_ok(corpus("qwen3_0_6b.json"));
  EXPECT_EQ(c.arch, ModelArch::kQwen3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.hidden, 1024);
  EXPECT_EQ(c.n_heads, 16);
  EXPECT_EQ(c.head_dim, 128);  // explicit, not hidden / heads = 64
  EXPECT_EQ(c.max_positions, 40960);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);  // written as an integer
  EXPECT_TRUE(c.tie_embeddings);

  // Transformers v5 layout: "dtype" and rope_parameters.
  c = parse_ok(corpus("qwen3_tiny_transformers_v5.json"));
  EXPECT_EQ(c.dtype, DType::kF32);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::kNone);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.head_dim, 64);
}

TEST(Config, Mistral) {
  ModelConfig c = parse_ok(corpus("mistral_7b_v0_1.json"));  // sliding_window 4096 < 32768: accepted
  EXPECT_EQ(c.arch, ModelArch::kMistral);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.max_positions, 32768);
  c = parse_ok(corpus("mistral_7b_instruct_v0_3.json"));  // sliding_window null
  EXPECT_EQ(c.vocab, 32768);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_FALSE(
      parse_ok(tiny(R"("attention_bias": true, "num_key_value_heads": 2)", "MistralForCausalLM")).qkv_bias);
  EXPECT_TRUE(Contains(
      parse_error(tiny(R"("sliding_window": "4096", "num_key_value_heads": 2)", "MistralForCausalLM")),
      "key 'sliding_window': expected an integer"));
}

// Which layers have a sliding window, as Hugging Face decides it, and the context limit that follows.
TEST(Config, SlidingWindows) {
  ModelConfig c = parse_ok(corpus("mistral_7b_v0_1.json"));  // every layer, 4096 of 32768 positions
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.windowed_layers(), 32);
  EXPECT_EQ(c.context_limit(), 4096);
  EXPECT_TRUE(Contains(c.context_limit_source(), "sliding_window 4096: 32 of its 32 layers"));
  EXPECT_TRUE(Contains(c.context_limit_source(), "--attend-beyond-window"));
  c = parse_ok(corpus("mistral_7b_instruct_v0_3.json"));  // null: none
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.context_limit(), 32768);
  EXPECT_EQ(c.context_limit_source(), "max_position_embeddings 32768");
  c = parse_ok(corpus("qwen2_5_0_5b_instruct.json"));  // sliding_window set, use_sliding_window false
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.context_limit(), c.max_positions);
  // Qwen2 with use_sliding_window: the layers from max_window_layers on (default 28).
  c = parse_ok(tiny(R"("use_sliding_window": true, "sliding_window": 512, "max_window_layers": 1, "num_key_value_heads": 2)",
                    "Qwen2ForCausalLM"));
  EXPECT_EQ(c.windowed_layers(), 1);
  EXPECT_EQ(c.windowed, (std::vector<bool>{false, true}));
  EXPECT_EQ(c.context_limit(), 512);
  c.windows_attended = true;  // an engine that attends the windows serves the model's whole positions
  EXPECT_EQ(c.context_limit(), c.max_positions);
  c = parse_ok(tiny(R"("use_sliding_window": true, "sliding_window": 512, "num_key_value_heads": 2)", "Qwen2ForCausalLM"));
  EXPECT_EQ(c.windowed_layers(), 0);  // 2 layers, all below the default 28
  EXPECT_EQ(c.context_limit(), c.max_positions);
  // A window wider than the positions does not limit anything.
  c = parse_ok(tiny(R"("sliding_window": 4096, "num_key_value_heads": 2, "max_position_embeddings": 2048)",
                    "MistralForCausalLM"));
  EXPECT_EQ(c.context_limit(), 2048);
  EXPECT_EQ(c.context_limit_source(), "max_position_embeddings 2048");
  // layer_types decides when given, for any architecture.
  c = parse_ok(tiny(R"("sliding_window": 128, "layer_types": ["sliding_attention", "full_attention"], "num_key_value_heads": 2)",
                    "Qwen3ForCausalLM"));
  EXPECT_EQ(c.windowed_layers(), 1);
  EXPECT_EQ(c.windowed, (std::vector<bool>{true, false}));
  EXPECT_EQ(c.context_limit(), 128);
  EXPECT_TRUE(Contains(parse_error(tiny(R"("layer_types": ["sliding_attention", "full_attention"], "num_key_value_heads": 2)",
                                        "Qwen3ForCausalLM")),
                       "the window size is missing"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("sliding_window": 128, "layer_types": ["local", "full_attention"])")),
                       "layer_types[0]"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("sliding_window": 128, "layer_types": ["full_attention"])")),
                       "expected a list of 2 layer types"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("sliding_window": 0, "num_key_value_heads": 2)", "MistralForCausalLM")),
                       "key 'sliding_window': expected a positive integer"));
  // Written back as Hugging Face writes it, and read again to the same config.
  for (const char* text : {R"("sliding_window": 512, "num_key_value_heads": 2)",
                           R"("use_sliding_window": true, "sliding_window": 512, "max_window_layers": 1, "num_key_value_heads": 2)"}) {
    const bool qwen = std::string(text).find("use_") != std::string::npos;
    const ModelConfig a = parse_ok(tiny(text, qwen ? "Qwen2ForCausalLM" : "MistralForCausalLM"));
    EXPECT_EQ(parse_ok(model_config_to_json(a)), a) << text;
  }
}

TEST(Config, HuggingFaceDefaults) {
  ModelConfig c = parse_ok(tiny());
  EXPECT_EQ(c.n_kv_heads, 4);  // = num_attention_heads
  EXPECT_EQ(c.head_dim, 64);   // hidden / heads
  EXPECT_EQ(c.max_positions, 2048);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::kNone);

  // Per-class defaults of an absent num_key_value_heads / head_dim / max_position_embeddings.
  std::string heads32 = R"("num_attention_heads": 32, "hidden_size": 2048)";
  EXPECT_EQ(parse_ok(tiny(heads32, "MistralForCausalLM")).n_kv_heads, 8);
  EXPECT_EQ(parse_ok(tiny(heads32, "MistralForCausalLM")).max_positions, 131072);
  EXPECT_EQ(parse_ok(tiny(heads32, "Qwen2ForCausalLM")).n_kv_heads, 32);
  EXPECT_EQ(parse_ok(tiny(heads32, "Qwen2ForCausalLM")).max_positions, 32768);
  EXPECT_EQ(parse_ok(tiny(heads32, "Qwen3ForCausalLM")).head_dim, 128);
  // An explicit null means "= num_attention_heads" everywhere.
  EXPECT_EQ(parse_ok(tiny(R"("num_key_value_heads": null)", "MistralForCausalLM")).n_kv_heads, 4);
  // A class default that does not divide the heads is reported as such.
  std::string m = parse_error(tiny("", "Qwen2ForCausalLM"));
  EXPECT_TRUE(Contains(m, "not a multiple of num_key_value_heads 32 (absent"));

  // model_type alone is enough.
  std::string no_arch = R"({"model_type": "qwen3", "hidden_size": 256, "intermediate_size": 512,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000})";
  c = parse_ok(no_arch);
  EXPECT_EQ(c.arch, ModelArch::kQwen3);
  EXPECT_EQ(c.arch_name, "Qwen3ForCausalLM");
}

TEST(Config, DtypeAndTokenIds) {
  EXPECT_EQ(parse_ok(tiny(R"("torch_dtype": "float32")")).dtype, DType::kF32);
  EXPECT_EQ(parse_ok(tiny(R"("torch_dtype": "float32", "dtype": "float16")")).dtype, DType::kF16);
  EXPECT_EQ(parse_ok(tiny(R"("torch_dtype": null)")).dtype, DType::kBF16);
  std::string m = parse_error(tiny(R"("torch_dtype": "int8")"));
  EXPECT_TRUE(Contains(m, "key 'torch_dtype'"));
  EXPECT_TRUE(Contains(m, "got string \"int8\""));

  ModelConfig c = parse_ok(tiny(R"("eos_token_id": [7, 9], "bos_token_id": 3)"));
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{7, 9}));
  EXPECT_EQ(c.bos_token_id, 3);
  EXPECT_TRUE(Contains(parse_error(tiny(R"("eos_token_id": [7, "x"])")), "key 'eos_token_id[1]'"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("eos_token_id": -2)")), "key 'eos_token_id'"));
  EXPECT_TRUE(
      Contains(parse_error(tiny(R"("bos_token_id": 1.5)")), "key 'bos_token_id': expected an integer"));
}

TEST(Config, MalformedJson) {
  std::string m = parse_error("{\n  \"hidden_size\": 4096,\n  \"vocab_size\": ,\n}", "models/x/config.json");
  EXPECT_TRUE(Contains(m, "models/x/config.json: invalid JSON"));
  EXPECT_TRUE(Contains(m, "line 3"));
  EXPECT_TRUE(Contains(parse_error(""), "invalid JSON"));
  EXPECT_TRUE(Contains(parse_error("[1, 2]"), "expected a JSON object at the top level, got an array"));
  EXPECT_TRUE(Contains(parse_error("\"llama\""), "at the top level"));
}

TEST(Config, WrongTypes) {
  std::string m = parse_error(tiny(R"("hidden_size": "4096")"));
  EXPECT_TRUE(Contains(m, "cfg/config.json: key 'hidden_size': expected an integer, got string \"4096\""));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("num_hidden_layers": 2.5)")), "key 'num_hidden_layers'"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("tie_word_embeddings": "yes")")),
                       "key 'tie_word_embeddings': expected true or false, got string \"yes\""));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("rms_norm_eps": "1e-5")")), "key 'rms_norm_eps'"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("rope_theta": -1)")), "key 'rope_theta'"));
  EXPECT_TRUE(
      Contains(parse_error(tiny(R"("rope_scaling": 8)")), "key 'rope_scaling': expected null or an object"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("architectures": "LlamaForCausalLM")")), "key 'architectures'"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("architectures": [])")), "key 'architectures'"));
  // An integral float is an integer.
  EXPECT_EQ(parse_ok(tiny(R"("hidden_size": 256.0)")).hidden, 256);
}

TEST(Config, MissingAndNonPositive) {
  std::string no_vocab =
      R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 512,
      "num_hidden_layers": 2, "num_attention_heads": 4})";
  EXPECT_TRUE(Contains(parse_error(no_vocab), "cfg/config.json: missing required key 'vocab_size'"));
  EXPECT_TRUE(Contains(parse_error(R"({"hidden_size": 8})"), "missing required key 'architectures'"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("vocab_size": null)")), "missing required key 'vocab_size'"));
  std::string m = parse_error(tiny(R"("num_hidden_layers": 0)"));
  EXPECT_TRUE(Contains(m, "key 'num_hidden_layers': expected a positive integer in [1, 4096], got 0"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("intermediate_size": -5)")), "got -5"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("vocab_size": 99999999999999999999)")), "key 'vocab_size'"));
}

TEST(Config, UnsupportedArchitecture) {
  std::string m = parse_error(tiny("", "GPT2LMHeadModel"));
  EXPECT_TRUE(Contains(m, "\"GPT2LMHeadModel\" is not supported"));
  EXPECT_TRUE(Contains(m, "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM"));
  m = parse_error(R"({"model_type": "gpt2", "hidden_size": 8})");
  EXPECT_TRUE(Contains(m, "model_type string \"gpt2\" is not supported"));
}

TEST(Config, HeadGeometry) {
  std::string m = parse_error(tiny(R"("num_key_value_heads": 3)"));
  EXPECT_TRUE(Contains(
      m, "key 'num_key_value_heads': num_attention_heads 4 is not a multiple of num_key_value_heads 3"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("head_dim": 63)")),
                       "key 'head_dim': expected an even integer in [32, 256], got 63"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("head_dim": 512)")), "got 512"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("head_dim": 16)")), "got 16"));
  EXPECT_EQ(parse_ok(tiny(R"("head_dim": 96)")).head_dim, 96);  // any even size in range
  EXPECT_TRUE(Contains(parse_error(tiny(R"("hidden_size": 250)")),
                       "hidden_size 250 is not a multiple of num_attention_heads 4"));
  EXPECT_EQ(parse_ok(tiny(R"("hidden_size": 250, "head_dim": 64)")).head_dim, 64);
}

TEST(Config, RopeScalingErrors) {
  std::string m = parse_error(tiny(R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0})"));
  EXPECT_TRUE(
      Contains(m, "key 'rope_scaling.rope_type': rope scaling type string \"yarn\" is not supported"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("rope_scaling": {"type": "dynamic", "factor": 2.0})")),
                       "key 'rope_scaling.type': rope scaling type string \"dynamic\""));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("rope_scaling": {"factor": 2.0})")),
                       "missing required key 'rope_scaling.rope_type'"));
  EXPECT_TRUE(
      Contains(parse_error(tiny(R"("rope_scaling": {"rope_type": "linear"})")), "'rope_scaling.factor'"));
  EXPECT_TRUE(Contains(
      parse_error(tiny(R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0})")),
      "missing required key 'rope_scaling.original_max_position_embeddings'"));
  EXPECT_TRUE(Contains(
      parse_error(tiny(R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})")),
      "must be greater than low_freq_factor"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("rope_scaling": {"rope_type": "linear", "factor": 0})")),
                       "positive number"));
}

TEST(Config, UnsupportedFeatures) {
  EXPECT_TRUE(Contains(parse_error(tiny(R"("hidden_act": "gelu")")), "key 'hidden_act': expected \"silu\""));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("mlp_bias": true)")), "key 'mlp_bias'"));
  EXPECT_TRUE(Contains(parse_error(tiny(R"("quantization_config": {"quant_method": "awq"})")), "quantized"));
}

TEST(Config, WriterRoundTrips) {
  std::vector<std::string> sources;
  for (const auto& entry : fs::directory_iterator(fs::path(FREEKV_SOURCE_DIR) / "tests/fuzz/corpus/config")) {
    std::ifstream in(entry.path());
    sources.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_GE(sources.size(), 5u);
  sources.push_back(
      tiny(R"("attention_bias": true, "eos_token_id": [], "bos_token_id": null, "num_key_value_heads": 1)",
           "Qwen3ForCausalLM"));
  for (const std::string& text : sources) {
    ModelConfig c = parse_ok(text);
    std::string written = model_config_to_json(c);
    auto again = parse_model_config(written, "written.json");
    ASSERT_TRUE(again.ok()) << again.status() << "\n" << written;
    EXPECT_TRUE(*again == c) << written;
    EXPECT_EQ(model_config_to_json(*again), written);
  }
  // A config made in code (mkmodel) round-trips too, and names its model_type.
  ModelConfig made;
  made.arch = ModelArch::kQwen3;
  made.arch_name = "Qwen3ForCausalLM";
  made.n_layers = 2;
  made.hidden = 64;
  made.n_heads = 2;
  made.n_kv_heads = 1;
  made.head_dim = 32;
  made.intermediate = 128;
  made.vocab = 300;
  made.max_positions = 1024;
  made.qk_norm = true;
  made.rope_scaling.kind = RopeScalingKind::kLlama3;
  made.rope_scaling.factor = 2.5;
  made.eos_token_ids = {5};
  made.sliding_window = 64;  // on the first layer only: written as layer_types
  made.windowed = {true, false};
  std::string written = model_config_to_json(made);
  EXPECT_TRUE(Contains(written, "\"model_type\": \"qwen3\""));
  EXPECT_TRUE(Contains(written, "\"architectures\": [\n    \"Qwen3ForCausalLM\"\n  ]"));
  auto again = parse_model_config(written, "made.json");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(*again == made) << written;
  EXPECT_EQ(model_arch_hf_name(ModelArch::kMistral), "MistralForCausalLM");
}

TEST(Config, LoadFromFile) {
  fs::path dir = fs::temp_directory_path() / ("freekv_config_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string path = (dir / "config.json").string();
  std::ofstream(path) << corpus("qwen3_0_6b.json");
  auto c = load_model_config(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, ModelArch::kQwen3);
  std::ofstream(path) << "{\"architectures\": [\"LlamaForCausalLM\"]";
  auto bad = load_model_config(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status().message(), path));
  auto missing = load_model_config((dir / "nope.json").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing.status().message(), "nope.json"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace freekv
