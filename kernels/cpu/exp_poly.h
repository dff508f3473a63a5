// The constants of the SIMD exponential for softmax arguments x ≤ 0 (exp_nonpositive in the AVX2 and
// AVX-512 primitives, one per vector width): x = k·ln2 + r with |r| ≤ ln2/2, exp(r) by a degree-6
// polynomial (relative error below 2e-7 on that range), 2^k built in the exponent bits. Arguments below
// kExpFloor flush to 0, as exp underflows there anyway.
#pragma once

namespace freekv {

inline constexpr float kExpFloor = -87.f;
inline constexpr float kLog2E = 1.44269504088896341f;
// ln2 split in two, so k·ln2 is subtracted without rounding away r's low bits.
inline constexpr float kLn2High = 0.693145751953125f;
inline constexpr float kLn2Low = 1.428606765330187045e-06f;
// exp(r) ≈ Σ r^i / i!, highest power first (Horner's order).
inline constexpr float kExpPoly[] = {1.f / 720, 1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f};

}  // namespace freekv
