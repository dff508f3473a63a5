// The safetensors parser: validates a whole file image held in memory (a mapping, or fuzz input)
// and returns views into it. Every offset is checked against the image before anything is read,
// with 64-bit arithmetic whose overflow is checked, because the header is untrusted.
#include "worker/model/safetensors.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/escaping.h"
#include "worker/model/json_util.h"

namespace freekv {
namespace {

using model_internal::describe_json;
using nlohmann::json;

struct StDTypeInfo {
  StDType type;
  const char* name;
  size_t size;
};

constexpr std::array<StDTypeInfo, 12> kStDTypes = {{
    {StDType::kF64, "F64", 8},
    {StDType::kF32, "F32", 4},
    {StDType::kF16, "F16", 2},
    {StDType::kBF16, "BF16", 2},
    {StDType::kI64, "I64", 8},
    {StDType::kI32, "I32", 4},
    {StDType::kI16, "I16", 2},
    {StDType::kI8, "I8", 1},
    {StDType::kU8, "U8", 1},
    {StDType::kBool, "BOOL", 1},
    {StDType::kF8E4M3, "F8_E4M3", 1},
    {StDType::kF8E5M2, "F8_E5M2", 1},
}};

// A real header is a few hundred KB even for the largest checkpoints; this bounds what a hostile
// file can make us allocate.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Tensor names come from the file: shorten and escape them so a message stays one readable line.
std::string quote_name(absl::string_view name) {
  constexpr size_t kMax = 200;
  std::string s = absl::CHexEscape(name.substr(0, kMax));
  return absl::StrCat("'", s, name.size() > kMax ? "...'" : "'");
}

std::string shape_string(const std::vector<int64_t>& shape) {
  constexpr size_t kMaxDims = 16;
  std::string s = "[";
  for (size_t i = 0; i < shape.size() && i < kMaxDims; ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  if (shape.size() > kMaxDims) absl::StrAppend(&s, ", ... (", shape.size(), " dims)");
  return s + "]";
}

// A JSON non-negative integer, or nullopt (floats, negatives and other types are refused).
std::optional<uint64_t> non_negative(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return uint64_t(v.get<int64_t>());
  return std::nullopt;
}

struct Span {
  uint64_t begin, end;
  size_t index;  // into the result
};

class HeaderParser {
 public:
  HeaderParser(const std::string& source, const uint8_t* data, uint64_t data_size)
      : source_(source), data_(data), data_size_(data_size) {}

  absl::Status error(absl::string_view name, absl::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": tensor ", quote_name(name), ": ", message));
  }

  absl::Status metadata(const json& v) const {
    if (!v.is_object())
      return absl::InvalidArgumentError(absl::StrCat(
          source_, ": __metadata__: expected an object of string values, got ", describe_json(v)));
    for (const auto& [key, value] : v.items()) {
      if (!value.is_string())
        return absl::InvalidArgumentError(absl::StrCat(source_, ": __metadata__ key ", quote_name(key),
                                                       ": expected a string, got ", describe_json(value)));
    }
    return absl::OkStatus();
  }

  absl::Status tensor(const std::string& name, const json& entry, std::vector<TensorView>* views,
                      std::vector<Span>* spans) const {
    if (!entry.is_object())
      return error(
          name, absl::StrCat("expected an object {dtype, shape, data_offsets}, got ", describe_json(entry)));
    TensorView view;
    view.name = name;

    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end()) return error(name, "missing 'dtype'");
    if (!dtype_it->is_string())
      return error(name, absl::StrCat("dtype: expected a string, got ", describe_json(*dtype_it)));
    const StDTypeInfo* info = nullptr;
    for (const StDTypeInfo& d : kStDTypes)
      if (dtype_it->get_ref<const std::string&>() == d.name) info = &d;
    if (info == nullptr) {
      std::string known;
      for (const StDTypeInfo& d : kStDTypes) absl::StrAppend(&known, known.empty() ? "" : ", ", d.name);
      return error(name, absl::StrCat("unknown dtype ", describe_json(*dtype_it), " (known: ", known, ")"));
    }
    view.dtype = info->type;

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end()) return error(name, "missing 'shape'");
    if (!shape_it->is_array())
      return error(name, absl::StrCat("shape: expected an array of non-negative integers, got ",
                                      describe_json(*shape_it)));
    uint64_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < shape_it->size(); ++i) {
      std::optional<uint64_t> dim = non_negative((*shape_it)[i]);
      if (!dim || *dim > uint64_t(INT64_MAX))
        return error(name, absl::StrCat("shape[", i, "]: expected a non-negative integer, got ",
                                        describe_json((*shape_it)[i])));
      view.shape.push_back(int64_t(*dim));
      // Keep multiplying after an overflow only to report it once all dims were checked.
      overflow = overflow || __builtin_mul_overflow(numel, *dim, &numel);
    }
    uint64_t nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, uint64_t(info->size), &nbytes))
      return error(name, absl::StrCat("shape ", shape_string(view.shape), " of ", info->name,
                                      " overflows 64-bit byte counts"));

    auto off_it = entry.find("data_offsets");
    if (off_it == entry.end()) return error(name, "missing 'data_offsets'");
    std::optional<uint64_t> begin, end;
    if (off_it->is_array() && off_it->size() == 2) {
      begin = non_negative((*off_it)[0]);
      end = non_negative((*off_it)[1]);
    }
    if (!begin || !end)
      return error(name, absl::StrCat("data_offsets: expected [begin, end] of non-negative integers, got ",
                                      off_it->is_array() && off_it->size() == 2
                                          ? absl::StrCat("[", describe_json((*off_it)[0]), ", ",
                                                         describe_json((*off_it)[1]), "]")
                                          : describe_json(*off_it)));
    if (*begin > *end)
      return error(name, absl::StrCat("data_offsets [", *begin, ", ", *end, "] begin after end"));
    if (*end > data_size_)
      return error(name, absl::StrCat("data_offsets [", *begin, ", ", *end, "] run past the data region of ",
                                      data_size_, " bytes"));
    if (*end - *begin != nbytes)
      return error(name, absl::StrCat("data_offsets span ", *end - *begin, " bytes but shape ",
                                      shape_string(view.shape), " of ", info->name, " needs ", nbytes));
    view.data = data_ + *begin;
    view.nbytes = size_t(nbytes);
    spans->push_back({*begin, *end, views->size()});
    views->push_back(std::move(view));
    return absl::OkStatus();
  }

 private:
  const std::string& source_;
  const uint8_t* data_;
  uint64_t data_size_;
};

absl::Status check_overlaps(std::vector<Span> spans, const std::vector<TensorView>& views,
                            const std::string& source) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Empty tensors occupy no bytes and cannot overlap anything.
  const Span* widest = nullptr;  // among earlier non-empty spans, the one reaching furthest
  for (const Span& s : spans) {
    if (s.begin == s.end) continue;
    if (widest != nullptr && s.begin < widest->end)
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": tensors ", quote_name(views[widest->index].name), " [", widest->begin, ", ", widest->end,
          ") and ", quote_name(views[s.index].name), " [", s.begin, ", ", s.end, ") overlap"));
    if (widest == nullptr || s.end > widest->end) widest = &s;
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view st_dtype_name(StDType t) {
  for (const StDTypeInfo& d : kStDTypes)
    if (d.type == t) return d.name;
  return "?";
}

size_t st_dtype_size(StDType t) {
  for (const StDTypeInfo& d : kStDTypes)
    if (d.type == t) return d.size;
  return 0;
}

absl::StatusOr<DType> weight_dtype(StDType t) {
  switch (t) {
    case StDType::kF32:
      return DType::kF32;
    case StDType::kF16:
      return DType::kF16;
    case StDType::kBF16:
      return DType::kBF16;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("safetensors dtype ", std::string(st_dtype_name(t)),
                                                 " cannot hold weights (need F32, F16 or BF16)"));
}

absl::StatusOr<std::vector<TensorView>> parse_safetensors(const uint8_t* bytes, size_t size,
                                                          const std::string& source) {
  if (bytes == nullptr || size < 8)
    return absl::InvalidArgumentError(absl::StrCat(source, ": file is ", bytes == nullptr ? 0 : size,
                                                   " bytes, shorter than the 8-byte header length"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes)
    return absl::InvalidArgumentError(absl::StrCat(source, ": header length ", header_len,
                                                   " exceeds the limit of ", kMaxHeaderBytes, " bytes"));
  if (header_len > size - 8)
    return absl::InvalidArgumentError(absl::StrCat(source, ": header length ", header_len,
                                                   " runs past the end of the file (", size,
                                                   " bytes, so at most ", size - 8, ")"));
  std::string_view text(reinterpret_cast<const char*>(bytes + 8), size_t(header_len));
  auto header = model_internal::parse_json(text, absl::StrCat(source, " (header)"));
  if (!header.ok()) return header.status();
  if (!header->is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": header: expected a JSON object, got ", describe_json(*header)));

  HeaderParser parser(source, bytes + 8 + header_len, uint64_t(size - 8 - header_len));
  std::vector<TensorView> views;
  std::vector<Span> spans;
  try {
    for (const auto& [name, entry] : header->items()) {
      if (name == "__metadata__") {
        FREEKV_RETURN_IF_ERROR(parser.metadata(entry));
        continue;
      }
      FREEKV_RETURN_IF_ERROR(parser.tensor(name, entry, &views, &spans));
    }
  } catch (const std::exception& e) {  // only bad_alloc is possible; never let it escape
    return absl::ResourceExhaustedError(absl::StrCat(source, ": cannot read header: ", e.what()));
  }
  FREEKV_RETURN_IF_ERROR(check_overlaps(std::move(spans), views, source));
  return views;
}

}  // namespace freekv
