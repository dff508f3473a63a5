// `freekv tokenize`: text on stdin -> token ids on stdout, as a JSON array on one line.
// Invalid UTF-8 on stdin is not an error: each maximal invalid subpart is encoded as U+FFFD, as the
// tokenizer does for any text (see worker/tokenizer/bpe_tokenizer.h).
#include <cstdio>
#include <string>

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
  bool add_special = false;
  ArgParser p("freekv tokenize --tokenizer FILE [--add-special]",
              "Reads UTF-8 text on stdin and prints its token ids as a JSON array, e.g. [128000, 9906],\n"
              "exactly as the Hugging Face tokenizer would encode it.");
  p.add_string("tokenizer", &tokenizer_path, "tokenizer.json, or a model directory that holds one", true);
  p.add_bool("add-special", &add_special,
             "add the special tokens of the tokenizer's post-processor (e.g. Llama 3's <|begin_of_text|>)");
  int rc = handle_parse_result(p, p.parse(argc, argv));
  if (rc >= 0) return rc;

  auto tokenizer = Tokenizer::load(tokenizer_path);
  if (!tokenizer.ok()) return report_error("tokenize", tokenizer.status());
  auto text = read_stdin();
  if (!text.ok()) return report_error("tokenize", text.status());

  std::vector<int32_t> ids = (*tokenizer)->encode(*text, add_special);
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(&out, i ? ", " : "", ids[i]);
  out += "]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : report_error("tokenize", absl::UnavailableError("writing to stdout failed"));
}

}  // namespace freekv
