// Safetensors: writer → parser round trips, every kind of corrupt file (each an error naming the
// file and the tensor, never a crash), and model directories with and without an index.
#include "worker/model/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace freekv {
namespace {

namespace fs = std::filesystem;

// gtest's own substring check, so the test needs no gmock.
::testing::AssertionResult Contains(absl::string_view text, absl::string_view part) {
  if (text.find(part) != absl::string_view::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\"\n    does not contain \"" << part << "\"";
}

std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char((i * 131 + seed * 7) & 0xff);
  return s;
}

// A file image from a header text and a data region, as a hostile writer could make it.
std::string image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = char(n >> (8 * i));
  return out + header + data;
}

absl::StatusOr<std::vector<TensorView>> parse(const std::string& bytes,
                                              const std::string& source = "t.safetensors") {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), source);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("freekv_st_") + info->name() + "_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::vector<TensorToWrite> sample_tensors() {
  return {
      {"model.norm.weight", DType::kF32, {5}, pattern(20, 1)},
      {"model.embed_tokens.weight", DType::kBF16, {3, 5}, pattern(30, 2)},
      {"lm_head.weight", DType::kF16, {3, 5}, pattern(30, 3)},
      {"odd",
       DType::kBF16,
       {1},
       pattern(2, 4)},  // 2 bytes: would misalign later F32s if data were name-ordered
      {"scalar", DType::kF32, {}, pattern(4, 5)},
      {"empty", DType::kF16, {0, 7}, ""},
  };
}

TEST_F(SafetensorsTest, RoundTripsAllDtypes) {
  auto tensors = sample_tensors();
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"made_by", "freekv test"}};
  ASSERT_TRUE(write_safetensors(path("a.safetensors"), tensors, meta).ok());
  std::string bytes = read_all(path("a.safetensors"));
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u) << "data region must start 8-byte aligned";

  auto views = parse(bytes);
  ASSERT_TRUE(views.ok()) << views.status();
  ASSERT_EQ(views->size(), tensors.size());
  std::map<std::string, const TensorView*> by_name;
  for (const auto& v : *views) by_name[v.name] = &v;
  for (const auto& t : tensors) {
    ASSERT_TRUE(by_name.count(t.name)) << t.name;
    const TensorView& v = *by_name[t.name];
    EXPECT_EQ(v.shape, t.shape) << t.name;
    auto dt = weight_dtype(v.dtype);
    ASSERT_TRUE(dt.ok());
    EXPECT_EQ(*dt, t.dtype) << t.name;
    EXPECT_EQ(v.nbytes, t.bytes.size()) << t.name;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(v.data), v.nbytes), t.bytes) << t.name;
    size_t offset = size_t(v.data - reinterpret_cast<const uint8_t*>(bytes.data()));
    EXPECT_EQ(offset % st_dtype_size(v.dtype), 0u) << t.name << " is not aligned to its element size";
  }
  EXPECT_NE(bytes.find("\"__metadata__\":{\"format\":\"pt\",\"made_by\":\"freekv test\"}"),
            std::string::npos);
  // No gaps: the data region is exactly the tensors (Hugging Face's loader insists).
  size_t total = 0;
  for (const auto& t : tensors) total += t.bytes.size();
  EXPECT_EQ(bytes.size(), 8 + header_len + total);
}

TEST_F(SafetensorsTest, WriterIsDeterministic) {
  auto tensors = sample_tensors();
  ASSERT_TRUE(write_safetensors(path("a.safetensors"), tensors, {}).ok());
  std::reverse(tensors.begin(), tensors.end());
  ASSERT_TRUE(write_safetensors(path("b.safetensors"), tensors, {}).ok());
  EXPECT_EQ(read_all(path("a.safetensors")), read_all(path("b.safetensors")));
  EXPECT_FALSE(fs::exists(path("a.safetensors.tmp")));
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  auto s = write_safetensors(path("x.safetensors"), {{"w", DType::kF32, {2, 2}, pattern(15, 0)}}, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(s.message()), "'w'"));
  EXPECT_TRUE(Contains(std::string(s.message()), "needs 16"));
  s = write_safetensors(path("x.safetensors"),
                        {{"w", DType::kF32, {1}, pattern(4, 0)}, {"w", DType::kF32, {1}, pattern(4, 0)}}, {});
  EXPECT_TRUE(Contains(std::string(s.message()), "twice"));
  s = write_safetensors(path("x.safetensors"), {{"__metadata__", DType::kF32, {1}, pattern(4, 0)}}, {});
  EXPECT_FALSE(s.ok());
  s = write_safetensors(path("x.safetensors"), {{"w", DType::kF32, {-1}, ""}}, {});
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(fs::exists(path("x.safetensors")));
}

TEST_F(SafetensorsTest, EveryTruncationIsAnError) {
  ASSERT_TRUE(write_safetensors(path("a.safetensors"), sample_tensors(), {{"k", "v"}}).ok());
  std::string bytes = read_all(path("a.safetensors"));
  ASSERT_TRUE(parse(bytes).ok());
  for (size_t len = 0; len < bytes.size(); ++len) {
    // An exact-size heap copy, so a sanitizer build catches any read past the end.
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + long(len));
    auto r = parse_safetensors(cut.data(), cut.size(), "cut.safetensors");
    ASSERT_FALSE(r.ok()) << "truncated to " << len << " of " << bytes.size() << " bytes";
    EXPECT_TRUE(Contains(std::string(r.status().message()), "cut.safetensors")) << len;
  }
}

TEST(SafetensorsParse, ShortFileAndHeaderLength) {
  auto r = parse("abc", "short.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "short.safetensors: file is 3 bytes"));

  std::string big = image("{}", "");
  big[0] = char(0x40);  // header length 64 in a 10-byte file
  r = parse(big, "big.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(
      Contains(std::string(r.status().message()), "big.safetensors: header length 64 runs past the end"));

  std::string huge = image("{}", "");
  std::memset(&huge[0], 0xff, 8);  // 2^64 - 1: must not wrap around in 8 + n
  r = parse(huge);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "exceeds the limit"));

  EXPECT_TRUE(parse(image("{}", "")).ok());       // no tensors at all is a valid file
  EXPECT_TRUE(parse(image("{}     ", "")).ok());  // space padding
}

TEST(SafetensorsParse, NonJsonHeader) {
  auto r = parse(image("{\"a\": {\"dtype\": }", ""), "bad.safetensors");
  ASSERT_FALSE(r.ok());
  std::string m(r.status().message());
  EXPECT_TRUE(Contains(m, "bad.safetensors"));
  EXPECT_TRUE(Contains(m, "invalid JSON"));
  EXPECT_TRUE(Contains(m, "line 1"));

  r = parse(image("[1, 2]", ""), "arr.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "expected a JSON object, got an array"));

  r = parse(image(std::string("{\"a\"\0:1}", 8), ""));
  EXPECT_FALSE(r.ok());
}

TEST(SafetensorsParse, UnknownDtype) {
  auto r = parse(image(R"({"w": {"dtype": "F17", "shape": [1], "data_offsets": [0, 4]}})", pattern(4, 0)),
                 "m.safetensors");
  ASSERT_FALSE(r.ok());
  std::string m(r.status().message());
  EXPECT_TRUE(Contains(m, "m.safetensors: tensor 'w': unknown dtype string \"F17\""));
  EXPECT_TRUE(Contains(m, "BF16"));

  r = parse(image(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", pattern(4, 0)));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "dtype: expected a string, got integer 4"));
}

TEST(SafetensorsParse, ShapeAndOffsetsMismatch) {
  std::string h =
      R"({"model.layers.0.mlp.up_proj.weight": {"dtype": "BF16", "shape": [64, 32], "data_offsets": [0, 1024]}})";
  auto r = parse(image(h, pattern(4096, 0)), "model.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(r.status().message()),
            "model.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': data_offsets span 1024 bytes but "
            "shape [64, 32] of BF16 needs 4096");
}

TEST(SafetensorsParse, OffsetsBeyondData) {
  auto r = parse(image(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", pattern(20, 0)),
                 "m.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(
      Contains(std::string(r.status().message()),
               "m.safetensors: tensor 'w': data_offsets [8, 24] run past the data region of 20 bytes"));

  r = parse(image(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", pattern(20, 0)));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "begin after end"));

  // Offsets near 2^64 must not wrap around.
  r = parse(
      image(R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [18446744073709551615, 1]}})", "ab"));
  EXPECT_FALSE(r.ok());
  r = parse(image(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}})", "ab"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "expected [begin, end] of non-negative integers"));
  r = parse(image(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}})", "ab"));
  EXPECT_FALSE(r.ok());
  r = parse(image(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0.0, 1]}})", "ab"));
  EXPECT_FALSE(r.ok());
}

TEST(SafetensorsParse, OverlappingTensors) {
  std::string h = R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})";
  auto r = parse(image(h, pattern(16, 0)), "o.safetensors");
  ASSERT_FALSE(r.ok());
  std::string m(r.status().message());
  EXPECT_TRUE(Contains(m, "o.safetensors: tensors 'a' [0, 16) and 'b' [8, 16) overlap"));

  // A tensor nested inside an earlier, longer one, past a short one that starts in between.
  h = R"({"a": {"dtype": "U8", "shape": [10], "data_offsets": [0, 10]},
          "b": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]},
          "c": {"dtype": "U8", "shape": [2], "data_offsets": [5, 7]}})";
  EXPECT_FALSE(parse(image(h, pattern(10, 0))).ok());

  // Gaps, out-of-order offsets and empty tensors anywhere are fine.
  h = R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]},
          "b": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
          "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [1, 1]}})";
  auto ok = parse(image(h, pattern(10, 0)));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 3u);
}

TEST(SafetensorsParse, BadShapes) {
  auto r = parse(image(R"({"w": {"dtype": "U8", "shape": [2, -1], "data_offsets": [0, 0]}})", ""),
                 "s.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(
      Contains(std::string(r.status().message()),
               "s.safetensors: tensor 'w': shape[1]: expected a non-negative integer, got integer -1"));
  r = parse(image(R"({"w": {"dtype": "U8", "shape": [2.5], "data_offsets": [0, 0]}})", ""));
  EXPECT_FALSE(r.ok());
  r = parse(image(R"({"w": {"dtype": "U8", "shape": "2", "data_offsets": [0, 0]}})", ""));
  EXPECT_FALSE(r.ok());
  // 2^32 × 2^32 overflows 64 bits: refused, not wrapped to 0.
  r = parse(
      image(R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}})", ""));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "overflows"));
  r = parse(image(R"({"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", ""));
  EXPECT_FALSE(r.ok());
}

TEST(SafetensorsParse, BadEntriesAndMetadata) {
  auto r = parse(image(R"({"w": [1, 2]})", ""), "e.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "e.safetensors: tensor 'w': expected an object"));
  for (const char* h :
       {R"({"w": {"shape": [0], "data_offsets": [0, 0]}})",
        R"({"w": {"dtype": "U8", "data_offsets": [0, 0]}})", R"({"w": {"dtype": "U8", "shape": [0]}})"}) {
    r = parse(image(h, ""));
    ASSERT_FALSE(r.ok()) << h;
    EXPECT_TRUE(Contains(std::string(r.status().message()), "missing")) << h;
  }
  r = parse(image(R"({"__metadata__": {"format": 1}})", ""), "md.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "md.safetensors: __metadata__ key 'format'"));
  r = parse(image(R"({"__metadata__": "pt"})", ""));
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(parse(image(R"({"__metadata__": {"format": "pt"}})", "")).ok());
}

TEST(SafetensorsParse, HostileNamesStayReadable) {
  auto r = parse(image("{\"" + std::string("xxx\\n") + std::string(996, 'x') + "\": 1}", ""));
  ASSERT_FALSE(r.ok());
  std::string m(r.status().message());
  EXPECT_LT(m.size(), 400u);
  EXPECT_EQ(m.find('\n'), std::string::npos);
}

TEST(SafetensorsParse, SeedCorpusParses) {
  fs::path dir = fs::path(FREEKV_SOURCE_DIR) / "tests/fuzz/corpus/safetensors";
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    auto r = parse(read_all(entry.path().string()), entry.path().string());
    EXPECT_TRUE(r.ok()) << r.status();
    ++n;
  }
  EXPECT_GE(n, 3);
}

TEST(SafetensorsDtypes, Names) {
  EXPECT_EQ(st_dtype_name(StDType::kBF16), "BF16");
  EXPECT_EQ(st_dtype_name(StDType::kF8E4M3), "F8_E4M3");
  EXPECT_EQ(st_dtype_size(StDType::kI64), 8u);
  EXPECT_EQ(st_dtype_size(StDType::kBool), 1u);
  EXPECT_FALSE(weight_dtype(StDType::kI64).ok());
  EXPECT_EQ(*weight_dtype(StDType::kF16), DType::kF16);
}

// ---- TensorStore ------------------------------------------------------------------------------

TEST_F(SafetensorsTest, StoreSingleFile) {
  ASSERT_TRUE(write_safetensors(path("model.safetensors"), sample_tensors(), {}).ok());
  auto store = TensorStore::open_dir(dir_.string());
  ASSERT_TRUE(store.ok()) << store.status();
  auto w = (*store)->get("model.embed_tokens.weight", {3, 5});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*w)->data), (*w)->nbytes), pattern(30, 2));
  EXPECT_EQ((*store)->file_of("lm_head.weight"), path("model.safetensors"));
  EXPECT_EQ((*store)->find("nope"), nullptr);

  auto missing = (*store)->get("model.layers.0.mlp.up_proj.weight", {8, 4});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(std::string(missing.status().message()),
                       "has no tensor 'model.layers.0.mlp.up_proj.weight' (expected shape [8, 4])"));
  EXPECT_TRUE(Contains(std::string(missing.status().message()), dir_.string()));

  auto shape = (*store)->get("lm_head.weight", {5, 3});
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(shape.status().message()),
                       "model.safetensors: tensor 'lm_head.weight' has shape [3, 5], expected [5, 3]"));
}

TEST_F(SafetensorsTest, StoreRefusesNonWeightDtype) {
  write_all(path("model.safetensors"),
            image(R"({"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})", pattern(16, 0)));
  auto store = TensorStore::open_dir(dir_.string());
  ASSERT_TRUE(store.ok()) << store.status();  // opens: only using it as a weight fails
  ASSERT_NE((*store)->find("ids"), nullptr);
  auto r = (*store)->get("ids", {2});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(r.status().message()), "tensor 'ids' has dtype I64"));
}

TEST_F(SafetensorsTest, StoreMissingFiles) {
  auto r = TensorStore::open_dir(dir_.string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(std::string(r.status().message()), dir_.string()));
  EXPECT_TRUE(Contains(std::string(r.status().message()), "model.safetensors.index.json"));

  r = TensorStore::open_dir(path("does-not-exist"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(std::string(r.status().message()), "does-not-exist"));

  write_all(path("model.safetensors"), "garbage");
  r = TensorStore::open_dir(dir_.string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(r.status().message()), path("model.safetensors")));
}

class SafetensorsShardedStore : public SafetensorsTest {
 protected:
  void write_shards() {
    ASSERT_TRUE(write_safetensors(path("model-00001-of-00002.safetensors"),
                                  {{"a.weight", DType::kBF16, {2, 2}, pattern(8, 1)},
                                   {"b.weight", DType::kF32, {2}, pattern(8, 2)}},
                                  {{"format", "pt"}})
                    .ok());
    ASSERT_TRUE(write_safetensors(path("model-00002-of-00002.safetensors"),
                                  {{"c.weight", DType::kF16, {3}, pattern(6, 3)}}, {{"format", "pt"}})
                    .ok());
  }
  void write_index(const std::string& weight_map) {
    write_all(path("model.safetensors.index.json"),
              R"({"metadata": {"total_size": 22}, "weight_map": )" + weight_map + "}");
  }
  const std::string kGoodMap = R"({"a.weight": "model-00001-of-00002.safetensors",
                                   "b.weight": "model-00001-of-00002.safetensors",
                                   "c.weight": "model-00002-of-00002.safetensors"})";
};

TEST_F(SafetensorsShardedStore, OpensAllShards) {
  write_shards();
  write_index(kGoodMap);
  auto store = TensorStore::open_dir(dir_.string());
  ASSERT_TRUE(store.ok()) << store.status();
  auto c = (*store)->get("c.weight", {3});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*c)->data), 6), pattern(6, 3));
  EXPECT_TRUE((*store)->get("a.weight", {2, 2}).ok());
  EXPECT_EQ((*store)->file_of("c.weight"), path("model-00002-of-00002.safetensors"));
  EXPECT_EQ((*store)->file_of("a.weight"), path("model-00001-of-00002.safetensors"));
}

TEST_F(SafetensorsShardedStore, IndexedTensorMissingFromShard) {
  write_shards();
  write_index(
      R"({"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00001-of-00002.safetensors",
                  "c.weight": "model-00002-of-00002.safetensors", "d.weight": "model-00002-of-00002.safetensors"})");
  auto r = TensorStore::open_dir(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(
      std::string(r.status().message()),
      "maps tensor 'd.weight' to 'model-00002-of-00002.safetensors', but that file has no such tensor"));
}

TEST_F(SafetensorsShardedStore, DuplicateTensorAcrossShards) {
  write_shards();
  ASSERT_TRUE(write_safetensors(path("model-00002-of-00002.safetensors"),
                                {{"a.weight", DType::kBF16, {2, 2}, pattern(8, 1)},
                                 {"c.weight", DType::kF16, {3}, pattern(6, 3)}},
                                {})
                  .ok());
  write_index(kGoodMap);
  auto r = TensorStore::open_dir(dir_.string());
  ASSERT_FALSE(r.ok());
  std::string m(r.status().message());
  EXPECT_TRUE(Contains(m, "tensor 'a.weight' is in both"));
  EXPECT_TRUE(Contains(m, "model-00001-of-00002.safetensors"));
  EXPECT_TRUE(Contains(m, "model-00002-of-00002.safetensors"));
}

TEST_F(SafetensorsShardedStore, TensorNotInIndexOrInAnotherShard) {
  write_shards();
  write_index(
      R"({"a.weight": "model-00001-of-00002.safetensors", "c.weight": "model-00002-of-00002.safetensors"})");
  auto r = TensorStore::open_dir(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "tensor 'b.weight' is not listed in"));

  write_index(
      R"({"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors",
                  "c.weight": "model-00002-of-00002.safetensors"})");
  r = TensorStore::open_dir(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "tensor 'b.weight' is mapped to 'model-00002"));
}

TEST_F(SafetensorsShardedStore, MissingShardAndBadIndex) {
  write_shards();
  write_index(
      R"({"a.weight": "model-00001-of-00002.safetensors", "z.weight": "model-00003-of-00003.safetensors"})");
  auto r = TensorStore::open_dir(dir_.string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(std::string(r.status().message()), "lists shard 'model-00003-of-00003.safetensors'"));

  write_index(R"({"a.weight": "../outside.safetensors"})");
  r = TensorStore::open_dir(dir_.string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(r.status().message()), "weight_map['a.weight']"));

  write_index(R"([1, 2])");
  r = TensorStore::open_dir(dir_.string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);

  write_all(path("model.safetensors.index.json"), "{\"weight_map\": {");
  r = TensorStore::open_dir(dir_.string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(r.status().message()), "model.safetensors.index.json: invalid JSON"));
}

}  // namespace
}  // namespace freekv
