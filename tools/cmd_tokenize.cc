// `freekv tokenize`: text on stdin -> token ids on stdout, as a JSON array on one line. With --lines,
// each stdin line is a JSON string and each output line the ids of that string: one process encodes
// a whole training set (tools/train) without the cost of a start per text.
// Invalid UTF-8 on stdin is not an error: each maximal invalid subpart is encoded as U+FFFD, as the
// tokenizer does for any text (see worker/tokenizer/bpe_tokenizer.h).
#include <cstdio>
#include <string>

#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

#include "tools/cli_args.h"
#include "tools/commands.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {

namespace {
absl::StatusOr<std::string> read_stdin() {
  std::string text;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), stdin)) > 0) text.append(buf, n);
  if (std::ferror(stdin)) return absl::UnavailableError("reading the text from stdin failed");
  return text;
}
}  // namespace

int cmd_tokenize(int argc, char** argv) {
  std::string tokenizer_path;
  bool add_special = false, lines = false;
  ArgParser p("freekv tokenize --tokenizer FILE [--add-special]",
              "Reads UTF-8 text on stdin and prints its token ids as a JSON array, e.g. [128000, 9906],\n"
              "exactly as the Hugging Face tokenizer would encode it.");
  p.add_string("tokenizer", &tokenizer_path, "tokenizer.json, or a model directory that holds one", true);
  p.add_bool("add-special", &add_special,
             "add the special tokens of the tokenizer's post-processor (e.g. Llama 3's <|begin_of_text|>)");
  p.add_bool("lines", &lines, "each input line is a JSON string; print one JSON array of ids per line");
  int rc = handle_parse_result(p, p.parse(argc, argv));
  if (rc >= 0) return rc;

  auto tokenizer = Tokenizer::load(tokenizer_path);
  if (!tokenizer.ok()) return report_error("tokenize", tokenizer.status());
  auto text = read_stdin();
  if (!text.ok()) return report_error("tokenize", text.status());

  auto ids_line = [&](const std::string& s) {
    std::vector<int32_t> ids = (*tokenizer)->encode(s, add_special);
    std::string line = "[";
    for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(&line, i ? ", " : "", ids[i]);
    return line + "]\n";
  };
  std::string out;
  if (!lines) {
    out = ids_line(*text);
  } else {
    int64_t number = 0;
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      ++number;
      auto parsed = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
      if (!parsed.is_string()) {
        return report_error("tokenize", absl::InvalidArgumentError(absl::StrCat(
                                            "--lines: line ", number, " is not a JSON string; write each text as \"...\" on its own line")));
      }
      out += ids_line(parsed.get<std::string>());
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : report_error("tokenize", absl::UnavailableError("writing to stdout failed"));
}

}  // namespace freekv
