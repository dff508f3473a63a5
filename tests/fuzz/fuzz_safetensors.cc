// Fuzz target: parse_safetensors over arbitrary bytes as a whole file image. Every view the parser
// accepts must lie inside the image; reading each byte of it lets AddressSanitizer (FREEKV_FUZZ or
// FREEKV_SANITIZE builds) catch a view that does not.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "worker/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto views = freekv::parse_safetensors(data, size, "fuzz.safetensors");
  if (!views.ok()) return 0;
  uint8_t sum = 0;
  for (const freekv::TensorView& v : *views) {
    if (v.nbytes > 0 && (v.data < data || v.data + v.nbytes > data + size)) {
      std::fprintf(stderr, "tensor view outside the input\n");
      std::abort();
    }
    for (size_t i = 0; i < v.nbytes; ++i) sum ^= v.data[i];
  }
  volatile uint8_t sink = sum;
  (void)sink;
  return 0;
}
