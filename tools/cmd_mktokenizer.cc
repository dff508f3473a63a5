// `freekv mktokenizer`: trains the project's byte-level BPE (worker/tokenizer/bpe_trainer.cc) on a
// text file and writes tokenizer.json. Used by tools/train for the shipped model's tokenizer.
#include "common/file_util.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {

int cmd_mktokenizer(int argc, char** argv) {
  std::string corpus_path, out;
  int64_t vocab = 4096;
  ArgParser p("freekv mktokenizer --corpus FILE --vocab N --out tokenizer.json",
              "Trains a byte-level BPE tokenizer (Llama 3 pre-tokenizer, <|begin_of_text|> and <|end_of_text|>\n"
              "as the last two ids) on a UTF-8 text file. Deterministic: the same file gives the same bytes.");
  p.add_string("corpus", &corpus_path, "UTF-8 training text", true);
  p.add_int("vocab", &vocab, "vocabulary size, special tokens included");
  p.add_string("out", &out, "where to write tokenizer.json", true);
  if (int rc = handle_parse_result(p, p.parse(argc, argv)); rc >= 0) return rc;
  auto corpus = read_file(corpus_path);
  if (!corpus.ok()) return report_error("mktokenizer", corpus.status());
  auto json = make_bpe_tokenizer_json(int(vocab), *corpus);
  if (!json.ok()) return report_error("mktokenizer", json.status());
  if (absl::Status s = write_file(out, *json); !s.ok()) return report_error("mktokenizer", s);
  return 0;
}

}  // namespace freekv
