// The built-in training text of make_bpe_tokenizer_json: a few KB of English prose and source code,
// written for freekv. Changing it changes every generated tokenizer (and so every random model's
// vocabulary), so treat it as frozen.
#pragma once

#include <string_view>

namespace freekv::tok {

std::string_view trainer_corpus();

}  // namespace freekv::tok
