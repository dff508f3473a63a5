#include "worker/kv/recall_queue.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace freekv {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

absl::Status RecallQueue::land(uint64_t ticket, const std::vector<uint8_t*>& destinations, size_t item_bytes) {
  return client_->wait_recall(ticket, [&](int64_t i, const uint8_t* bytes) {
    std::memcpy(destinations[size_t(i)], bytes, item_bytes);
  });
}

void RecallQueue::land_flight(Flight& f) {
  f.status = land(f.ticket, f.request.destinations, f.request.item_bytes);
  f.landed = true;
}

absl::Status RecallQueue::free_a_pair() {
  while (client_->free_pairs() == 0) {
    if (order_.empty()) {
      return absl::UnavailableError(absl::StrCat("every one of the ", client_->staging_pairs(),
                                                 " staging pairs is held by a recall the kvstore has not finished "
                                                 "(timed out); retry once the kvstore catches up"));
    }
    const uint64_t oldest = order_.front();
    order_.pop_front();
    land_flight(flights_.at(oldest));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> RecallQueue::post(RecallRequest request) {
  if (request.items.size() != request.destinations.size()) {
    return absl::InternalError("recall with a destination count that differs from its items");
  }
  if (request.items.size() > client_->max_recall_items()) {
    return absl::InvalidArgumentError(absl::StrCat("a background recall of ", request.items.size(),
                                                   " items exceeds the channel's ", client_->max_recall_items()));
  }
  FREEKV_RETURN_IF_ERROR(free_a_pair());
  Flight f;
  FREEKV_ASSIGN_OR_RETURN(f.ticket, client_->post_recall(request.session, request.layer, request.items,
                                                          RecallMode::kDoubleBuffered, request.source));
  f.request = std::move(request);
  const uint64_t handle = next_handle_++;
  flights_.emplace(handle, std::move(f));
  order_.push_back(handle);
  return handle;
}

absl::Status RecallQueue::finish(uint64_t handle, double* wait_seconds) {
  auto it = flights_.find(handle);
  if (it == flights_.end()) return absl::InternalError(absl::StrCat("unknown recall handle ", handle));
  if (!it->second.landed) {
    const auto t0 = std::chrono::steady_clock::now();
    order_.erase(std::find(order_.begin(), order_.end(), handle));
    land_flight(it->second);
    if (wait_seconds != nullptr) *wait_seconds += seconds_since(t0);
  }
  absl::Status s = std::move(it->second.status);
  flights_.erase(it);
  return s;
}

absl::Status RecallQueue::fetch(const RecallRequest& r, double* wait_seconds) {
  if (r.items.size() != r.destinations.size()) {
    return absl::InternalError("recall with a destination count that differs from its items");
  }
  const auto t0 = std::chrono::steady_clock::now();
  const size_t per_part = client_->max_recall_items();
  absl::Status status;
  for (size_t b = 0; b < r.items.size() && status.ok(); b += per_part) {
    const size_t e = std::min(r.items.size(), b + per_part);
    status = free_a_pair();
    if (!status.ok()) break;
    const std::vector<RecallItem> part(r.items.begin() + long(b), r.items.begin() + long(e));
    auto ticket = client_->post_recall(r.session, r.layer, part, RecallMode::kDoubleBuffered, r.source);
    if (!ticket.ok()) {
      status = ticket.status();
      break;
    }
    status = land(*ticket, std::vector<uint8_t*>(r.destinations.begin() + long(b), r.destinations.begin() + long(e)),
                  r.item_bytes);
  }
  if (wait_seconds != nullptr) *wait_seconds += seconds_since(t0);
  return status;
}

}  // namespace freekv
