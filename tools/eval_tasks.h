// Long-context tasks generated locally from a seed, for `freekv eval`: passkey (one needle in a
// haystack of filler text at a chosen depth), needle (several facts of the same form, one asked) and
// key-value retrieval (one value among many random pairs). Each task is a prompt sized in tokens by
// the model's own tokenizer, and the answer to look for in the generated text.
//
// Every sentence of a prompt starts with a space, as the shipped model's training text does
// (tools/train/corpus.py), and the question ends where the fact's own wording does, so a model that
// retrieves continues with the answer.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "worker/tokenizer/tokenizer.h"

namespace freekv {

struct EvalCase {
  std::string prompt;
  std::string answer;  // correct when the generated text contains it
};

// About `tokens` tokens of filler with the pass key sentence at `depth` ∈ [0, 1] of the filler.
EvalCase make_passkey_case(const Tokenizer& tokenizer, int64_t tokens, double depth, std::mt19937_64& rng);

// About `tokens` tokens of filler with four "special magic number for <word>" facts; the one asked
// is at `depth`, the other three at random depths.
EvalCase make_needle_case(const Tokenizer& tokenizer, int64_t tokens, double depth, std::mt19937_64& rng);

// About `tokens` tokens of "key": "value" pairs; the question asks for the pair at `depth`.
EvalCase make_kv_case(const Tokenizer& tokenizer, int64_t tokens, double depth, std::mt19937_64& rng);

// About `tokens` tokens of filler text (for agreement runs).
std::string make_filler(const Tokenizer& tokenizer, int64_t tokens);

}  // namespace freekv
