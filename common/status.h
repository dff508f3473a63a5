// Error handling for freekv: every fallible function returns absl::Status or absl::StatusOr<T>.
// Codes follow DESIGN.md §5 so they map one-to-one onto gRPC status codes later:
// INVALID_ARGUMENT for bad input, NOT_FOUND for a missing file or session, RESOURCE_EXHAUSTED for
// full pools, UNAVAILABLE for a peer that is down. Messages name what is wrong and what to do.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#define FREEKV_CONCAT_INNER(a, b) a##b
#define FREEKV_CONCAT(a, b) FREEKV_CONCAT_INNER(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define FREEKV_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status freekv_status_ = (expr);          \
    if (!freekv_status_.ok()) return freekv_status_; \
  } while (0)

// `lhs = value of expr` where expr is an absl::StatusOr; returns its status on error.
#define FREEKV_ASSIGN_OR_RETURN(lhs, expr) \
  FREEKV_ASSIGN_OR_RETURN_IMPL(FREEKV_CONCAT(freekv_statusor_, __LINE__), lhs, expr)
#define FREEKV_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
