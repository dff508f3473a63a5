// Compares freekv's tokenizer with golden ids from the Hugging Face reference (make_golden.mjs).
//
//   tokenizer_golden_check --write-generated DIR SIZE...   writes DIR/generated_SIZE/tokenizer.json
//                                                         (make_bpe_tokenizer_json) for the reference,
//                                                         and its training text to
//                                                         DIR/trainer_corpus/trainer_corpus.txt
//   tokenizer_golden_check GOLDEN.json...                 checks every case of every golden file
//
// Per case: encode without and with special tokens (ids must be equal), decode of the reference ids
// with and without skipping special tokens (text must be equal), roundtrip decode(encode(text)) ==
// normalised text (where the golden gives one), and streaming detokenization == decode. Prints per-tokenizer counts and the first
// mismatch of each kind in detail; exits 1 on any mismatch.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/tokenizer/trainer_corpus.h"

namespace {

using json = nlohmann::json;

std::string escape(std::string_view s, size_t limit = 160) {
  std::string out;
  for (unsigned char c : s.substr(0, limit)) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += absl::StrFormat("\\x%02x", c);
    else out += char(c);
  }
  if (s.size() > limit) out += absl::StrCat("... (", s.size(), " bytes)");
  return out;
}

std::string show_ids(const freekv::Tokenizer& tok, const std::vector<int32_t>& ids, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < std::min(to, ids.size()); ++i) {
    absl::StrAppend(&out, i == from ? "" : " ", ids[i], "'", escape(tok.token_bytes(ids[i]), 40), "'");
  }
  return out;
}

struct Check {
  explicit Check(const char* w) : what(w) {}
  const char* what;
  int matched = 0, mismatched = 0, not_applicable = 0;
  std::string first;  // detail of the first mismatch
};

void compare_ids(const freekv::Tokenizer& tok, Check& c, const std::string& name, const std::string& text,
                 const std::vector<int32_t>& want, const std::vector<int32_t>& got) {
  if (want == got) {
    ++c.matched;
    return;
  }
  if (c.mismatched++ > 0) return;
  size_t d = 0;
  while (d < want.size() && d < got.size() && want[d] == got[d]) ++d;
  size_t from = d >= 3 ? d - 3 : 0;
  c.first = absl::StrCat("  case ", name, ": text \"", escape(text), "\"\n", "    lengths: reference ", want.size(),
                         ", ours ", got.size(), "; first difference at index ", d, "\n    reference: ",
                         show_ids(tok, want, from, d + 6), "\n    ours:      ", show_ids(tok, got, from, d + 6), "\n");
}

void compare_text(Check& c, const std::string& name, const std::string& want, const std::string& got) {
  if (want == got) {
    ++c.matched;
    return;
  }
  if (c.mismatched++ > 0) return;
  size_t d = 0;
  while (d < want.size() && d < got.size() && want[d] == got[d]) ++d;
  size_t from = d >= 20 ? d - 20 : 0;
  c.first = absl::StrCat("  case ", name, ": first difference at byte ", d, "\n    reference: \"",
                         escape(std::string_view(want).substr(from), 80), "\"\n    ours:      \"",
                         escape(std::string_view(got).substr(from), 80), "\"\n");
}

std::vector<int32_t> to_ids(const json& j) {
  std::vector<int32_t> ids;
  for (const json& v : j) ids.push_back(v.get<int32_t>());
  return ids;
}

int check_golden(const std::string& golden_path) {
  auto text = freekv::read_file(golden_path);
  if (!text.ok()) {
    std::fprintf(stderr, "golden: %s\n", std::string(text.status().message()).c_str());
    return 1;
  }
  json golden = json::parse(*text);
  const std::string name = golden["name"].get<std::string>();
  const std::string path = golden["path"].get<std::string>();
  auto t0 = std::chrono::steady_clock::now();
  auto loaded = freekv::Tokenizer::load(path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s: cannot load %s: %s\n", name.c_str(), path.c_str(),
                 std::string(loaded.status().message()).c_str());
    return 1;
  }
  const freekv::Tokenizer& tok = **loaded;
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  Check ids("ids (add_special=false)"), ids_special("ids (add_special=true)"), decoded("decode"),
      decoded_skip("decode (skip_special)"), roundtrip("roundtrip decode(encode(x))"), streaming("streaming detokenizer");
  double encode_s = 0;
  size_t encode_bytes = 0;
  for (const json& c : golden["cases"]) {
    const std::string cname = c["name"].get<std::string>();
    const std::string ctext = c["text"].get<std::string>();
    auto e0 = std::chrono::steady_clock::now();
    std::vector<int32_t> got = tok.encode(ctext, false);
    encode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
    encode_bytes += ctext.size();
    std::vector<int32_t> got_special = tok.encode(ctext, true);
    compare_ids(tok, ids, cname, ctext, to_ids(c["ids"]), got);
    compare_ids(tok, ids_special, cname, ctext, to_ids(c["ids_special"]), got_special);
    compare_text(decoded, cname, c["decoded"].get<std::string>(), tok.decode(to_ids(c["ids"]), false));
    compare_text(decoded_skip, cname, c["decoded_skip"].get<std::string>(), tok.decode(to_ids(c["ids_special"]), true));
    if (c["roundtrip"].is_null()) {
      ++roundtrip.not_applicable;
    } else {
      compare_text(roundtrip, cname, c["roundtrip"].get<std::string>(), tok.decode(got, false));
    }
    freekv::StreamingDetokenizer stream(tok, /*skip_special=*/false);
    std::string streamed;
    for (int32_t id : got_special) streamed += stream.push(id);
    streamed += stream.flush();
    compare_text(streaming, cname, tok.decode(got_special, false), streamed);
  }
  int failures = 0;
  std::printf("%s (%s): loaded in %.2f s, encode %.1f MB/s\n", name.c_str(), path.c_str(), load_s,
              encode_s > 0 ? encode_bytes / encode_s / 1e6 : 0.0);
  for (Check* c : {&ids, &ids_special, &decoded, &decoded_skip, &roundtrip, &streaming}) {
    std::printf("  %-30s matched %d, mismatched %d%s\n", c->what, c->matched, c->mismatched,
                c->not_applicable ? absl::StrCat(", not applicable ", c->not_applicable).c_str() : "");
    if (c->mismatched > 0) std::printf("  first mismatch of %s:\n%s", c->what, c->first.c_str());
    failures += c->mismatched;
  }
  std::printf("%s: %s\n", name.c_str(), failures == 0 ? "all cases match the reference" : "MISMATCHES");
  return failures == 0 ? 0 : 1;
}

int write_generated(const std::string& dir, const std::vector<std::string>& sizes) {
  std::filesystem::path corpus = std::filesystem::path(dir) / "trainer_corpus" / "trainer_corpus.txt";
  std::filesystem::create_directories(corpus.parent_path());
  if (auto st = freekv::write_file(corpus.string(), freekv::tok::trainer_corpus()); !st.ok()) {
    std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
    return 1;
  }
  for (const std::string& s : sizes) {
    int size = std::atoi(s.c_str());
    auto text = freekv::make_bpe_tokenizer_json(size);
    if (!text.ok()) {
      std::fprintf(stderr, "make_bpe_tokenizer_json(%d): %s\n", size, std::string(text.status().message()).c_str());
      return 1;
    }
    std::filesystem::path out = std::filesystem::path(dir) / absl::StrCat("generated_", size) / "tokenizer.json";
    std::filesystem::create_directories(out.parent_path());
    if (auto st = freekv::write_file(out.string(), *text); !st.ok()) {
      std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
      return 1;
    }
    std::printf("wrote %s\n", out.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fprintf(stderr, "usage: %s --write-generated DIR SIZE... | GOLDEN.json...\n", argv[0]);
    return 2;
  }
  try {
    if (args[0] == "--write-generated") {
      if (args.size() < 3) return 2;
      return write_generated(args[1], std::vector<std::string>(args.begin() + 2, args.end()));
    }
    int rc = 0;
    for (const std::string& g : args) rc |= check_golden(g);
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "golden file is malformed: %s\n", e.what());
    return 1;
  }
}
