#include "worker/gpu/sequence_slots.h"

#include "absl/strings/str_cat.h"

namespace freekv {

SequenceSlots::SequenceSlots(int64_t n_slots) : taken_(size_t(n_slots), false) {}

absl::StatusOr<int64_t> SequenceSlots::slot_for(const Sequence* seq) {
  if (auto it = owner_of_.find(seq); it != owner_of_.end()) return it->second;
  for (size_t s = 0; s < taken_.size(); ++s) {
    if (taken_[s]) continue;
    taken_[s] = true;
    owner_of_.emplace(seq, int64_t(s));
    return int64_t(s);
  }
  return absl::ResourceExhaustedError(absl::StrCat("all ", taken_.size(),
                                                   " sequences of the GPU KV pool are in use; retry when one finishes, ",
                                                   "or start with more --gpu-sequences"));
}

int64_t SequenceSlots::release(const Sequence* seq) {
  auto it = owner_of_.find(seq);
  if (it == owner_of_.end()) return -1;
  const int64_t slot = it->second;
  taken_[size_t(slot)] = false;
  owner_of_.erase(it);
  return slot;
}

}  // namespace freekv
