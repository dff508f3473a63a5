// Which region (slot) of the device KV pool holds which sequence: a slot is taken at a sequence's first
// step and given back when the engine releases the sequence. Plain C++, tested on the CPU.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace freekv {

class Sequence;

class SequenceSlots {
 public:
  explicit SequenceSlots(int64_t n_slots);

  // seq's slot; its first call takes the lowest free one. RESOURCE_EXHAUSTED (saying how many there
  // are) when every slot holds another sequence.
  absl::StatusOr<int64_t> slot_for(const Sequence* seq);
  // Gives seq's slot back and returns it, or −1 when seq holds none (it never stepped).
  int64_t release(const Sequence* seq);
  int64_t in_use() const { return int64_t(owner_of_.size()); }

 private:
  std::vector<bool> taken_;
  std::unordered_map<const Sequence*, int64_t> owner_of_;
};

}  // namespace freekv
