// Op tests: every fast CPU path against its plain twin on random inputs (DESIGN §6, layer 1).
// Each comparison prints its max abs and max rel error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <limits>
#include <cstdlib>
#include <tuple>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cpu/matmul_onednn.h"
#include "kernels/cpu/primitives.h"
#include "kernels/ops.h"
#include "kernels/shared_math.h"

namespace freekv {
namespace {

std::vector<float> random_vec(size_t n, std::mt19937& rng, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::string to_dtype_bytes(const std::vector<float>& v, DType t) {
  std::string out(v.size() * dtype_size(t), '\0');
  for (size_t i = 0; i < v.size(); ++i) store_from_f32(out.data(), t, i, v[i]);
  return out;
}

// Max abs error, and max error relative to the reference's largest magnitude.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  double max_abs = 0, max_ref = 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    max_abs = std::max(max_abs, double(std::fabs(got[i] - want[i])));
    max_ref = std::max(max_ref, double(std::fabs(want[i])));
  }
  std::printf("%s: max abs err %.3g, rel %.3g\n", what, max_abs, max_abs / max_ref);
  EXPECT_LE(max_abs / max_ref, tol) << what;
}

TEST(DType, ConversionsRoundTripAndRoundToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f32_to_f16(65520.f), 0x7c00);                 // rounds to infinity
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.f, -24));   // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.f, -24)), 0x0001);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  std::mt19937 rng(1);
  for (float x : random_vec(10000, rng, 100.f)) {
    EXPECT_EQ(f32_to_f16(f16_to_f32(f32_to_f16(x))), f32_to_f16(x));
    EXPECT_LE(std::fabs(bf16_to_f32(f32_to_bf16(x)) - x), std::fabs(x) * (1.f / 256));
  }
}

// A set's decode-attention products against the scalar set's: every dtype, groups taken four heads at a
// time and one at a time (1, 2, 4, 7), head dims on and off the AVX-512 forms' steps (64 and 128; 80
// and 16, which the AVX-512 set hands to the AVX2 one for V or for both), one key and a page's worth.
void expect_decode_attention_matches_scalar(const CpuPrimitives& set, std::mt19937& rng) {
  const CpuPrimitives& sc = scalar_primitives();
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t group : {1, 2, 4, 7}) {
      for (int64_t d : {16, 64, 80, 128}) {
        for (int64_t n : {1, 29}) {
          const std::string what = std::string(set.name) + " " + std::string(dtype_name(t)) +
                                   " group=" + std::to_string(group) + " d=" + std::to_string(d) +
                                   " n=" + std::to_string(n);
          auto q = random_vec(size_t(group * d), rng), kv = random_vec(size_t(n * d), rng);
          std::string kb = to_dtype_bytes(kv, t);
          std::vector<float> sa(size_t(group * n)), sb(size_t(group * n));
          set.scores_group(q.data(), group, kb.data(), t, n, d, 0.125f, sa.data());
          sc.scores_group(q.data(), group, kb.data(), t, n, d, 0.125f, sb.data());
          expect_close(sa, sb, 1e-5f, ("scores_group " + what).c_str());
          auto p = random_vec(size_t(group * n), rng), acc_a = random_vec(size_t(group * d), rng);
          auto acc_b = acc_a;
          std::vector<float> decay(static_cast<size_t>(group));
          for (int64_t g = 0; g < group; ++g) decay[size_t(g)] = 0.25f + 0.125f * float(g);
          set.accumulate_group(p.data(), group, kb.data(), t, n, d, decay.data(), acc_a.data());
          sc.accumulate_group(p.data(), group, kb.data(), t, n, d, decay.data(), acc_b.data());
          expect_close(acc_a, acc_b, 1e-5f, ("accumulate_group " + what).c_str());
        }
      }
    }
  }
}

TEST(Primitives, Avx2MatchesScalar) {
  const CpuPrimitives* avx2 = avx2_primitives();
  if (avx2 == nullptr) GTEST_SKIP() << "this CPU has no AVX2/FMA/F16C";
  const CpuPrimitives& sc = scalar_primitives();
  std::mt19937 rng(2);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    auto src = random_vec(1003, rng, 3.f);
    std::string a(src.size() * dtype_size(t), '\0'), b = a;
    avx2->from_f32(src.data(), t, a.data(), int64_t(src.size()));
    sc.from_f32(src.data(), t, b.data(), int64_t(src.size()));
    EXPECT_EQ(a, b) << "from_f32 " << dtype_name(t);
    std::vector<float> fa(src.size()), fb(src.size());
    avx2->to_f32(a.data(), t, fa.data(), int64_t(src.size()));
    sc.to_f32(a.data(), t, fb.data(), int64_t(src.size()));
    EXPECT_EQ(fa, fb) << "to_f32 " << dtype_name(t);
  }
  {
    // Softmax numerators: every argument x - shift ≤ 0, down to underflow.
    std::vector<float> xa(1000), xb;
    for (size_t i = 0; i < xa.size(); ++i) xa[i] = -100.f + 0.1f * float(i) + 0.0137f * float(i % 7);
    xb = xa;
    const float sa = avx2->exp_shifted(xa.data(), int64_t(xa.size()), 0.5f);
    const float sb = sc.exp_shifted(xb.data(), int64_t(xb.size()), 0.5f);
    expect_close(xa, xb, 1e-6f, "exp_shifted");
    EXPECT_NEAR(sa, sb, 1e-5 * sb);
  }
  {
    // SwiGLU across both signs of the gate, out to where exp(−|g|) underflows, with a tail.
    std::vector<float> gate(1003), up(1003), a(1003), b(1003);
    for (size_t i = 0; i < gate.size(); ++i) {
      gate[i] = -120.f + 0.24f * float(i) + 0.0137f * float(i % 7);
      up[i] = 1.f + 0.01f * float(i % 13);
    }
    avx2->swiglu(gate.data(), up.data(), a.data(), int64_t(gate.size()));
    sc.swiglu(gate.data(), up.data(), b.data(), int64_t(gate.size()));
    for (size_t i = 0; i < gate.size(); ++i) EXPECT_NEAR(a[i], b[i], 2e-6f * std::max(1.f, std::fabs(b[i]))) << "gate " << gate[i];
  }
  {
    // Row maxima at every length past the vector tails, the maximum in every position, and none (n = 0).
    std::mt19937 rng(8);
    for (int64_t n = 0; n <= 40; ++n) {
      auto x = random_vec(size_t(n), rng);
      for (int64_t at = 0; at < n; ++at) {
        std::vector<float> y = x;
        y[size_t(at)] = 50.f;
        EXPECT_EQ(avx2->max_of(y.data(), n), sc.max_of(y.data(), n)) << "n=" << n << " at=" << at;
        EXPECT_EQ(avx2->max_of(y.data(), n), 50.f);
      }
    }
    EXPECT_EQ(avx2->max_of(nullptr, 0), -std::numeric_limits<float>::infinity());
  }
  expect_decode_attention_matches_scalar(*avx2, rng);
}

TEST(Primitives, Avx512DecodeAttentionMatchesScalar) {
  const CpuPrimitives* avx512 = avx512_primitives();
  if (avx512 == nullptr) GTEST_SKIP() << "this CPU has no AVX-512F";
  std::mt19937 rng(9);
  expect_decode_attention_matches_scalar(*avx512, rng);
}

// The AVX-512 bf16 matvec against the scalar one for every activation-row count, with k tails (not a
// multiple of its 32-weight step) and row tails (not a multiple of its tile's rows).
TEST(Primitives, Avx512MatvecMatchesScalar) {
  const CpuPrimitives* avx512 = avx512_primitives();
  if (avx512 == nullptr) GTEST_SKIP() << "this CPU has no AVX-512F";
  std::mt19937 rng(5);
  for (int64_t n = 1; n <= 8; ++n) {
    for (auto [k, rows] : {std::pair<int64_t, int64_t>{64, 24}, {131, 77}, {1030, 13}}) {
      auto x = random_vec(size_t(n * k), rng);
      std::string w = to_dtype_bytes(random_vec(size_t(rows * k), rng, 0.1f), DType::kBF16);
      std::vector<float> got(size_t(n * rows)), want(size_t(n * rows));
      avx512->matvec(x.data(), n, w.data(), DType::kBF16, k, rows, got.data(), rows);
      scalar_primitives().matvec(x.data(), n, w.data(), DType::kBF16, k, rows, want.data(), rows);
      expect_close(got, want, 1e-5f, ("avx512 matvec n=" + std::to_string(n) + " k=" + std::to_string(k)).c_str());
    }
  }
}

// The AVX512_BF16 matvec against the reference product of the same bf16-rounded activations, for every
// activation-row count, with k tails (not a multiple of its 32-element step) and row tails.
TEST(Primitives, Avx512Bf16DotMatvecMatchesReference) {
  const CpuPrimitives* avx512 = avx512_primitives();
  if (avx512 == nullptr || avx512->matvec_bf16_dot == nullptr) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  std::mt19937 rng(6);
  for (int64_t n = 1; n <= 8; ++n) {
    for (auto [k, rows] : {std::pair<int64_t, int64_t>{64, 24}, {131, 77}, {1030, 13}}) {
      std::string x = to_dtype_bytes(random_vec(size_t(n * k), rng), DType::kBF16);
      std::string w = to_dtype_bytes(random_vec(size_t(rows * k), rng, 0.1f), DType::kBF16);
      std::vector<float> x_rounded(size_t(n * k)), got(size_t(n * rows)), want(size_t(n * rows));
      scalar_primitives().to_f32(x.data(), DType::kBF16, x_rounded.data(), n * k);
      avx512->matvec_bf16_dot(reinterpret_cast<const uint16_t*>(x.data()), n,
                              reinterpret_cast<const uint16_t*>(w.data()), k, rows, got.data(), rows);
      matmul_reference(x_rounded.data(), w.data(), DType::kBF16, nullptr, want.data(), n, k, rows);
      expect_close(got, want, 1e-5f, ("bf16 dot matvec n=" + std::to_string(n) + " k=" + std::to_string(k)).c_str());
    }
  }
}

// The fused exponential and bf16 rounding of prefill attention's probabilities against std::exp and the
// scalar rounding: each output within one bf16 step (the polynomial's 2e-7 relative error can tip a
// rounding), the sum of the unrounded values to 1e-6, tails of its 16 lanes, arguments below the −87
// flush, and nothing written past n.
TEST(Primitives, Avx512Bf16ExpShiftedMatchesReference) {
  const CpuPrimitives* avx512 = avx512_primitives();
  if (avx512 == nullptr || avx512->exp_shifted_bf16 == nullptr) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> arg(-40.f, 3.f);
  for (int64_t n : {1, 15, 16, 17, 100, 257}) {
    const float shift = 3.f;
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = arg(rng);
    x[0] = -200.f;  // exp(−203): flushed to 0 by both
    std::vector<uint16_t> got(size_t(n + 3), 0xabcd);
    const float sum = avx512->exp_shifted_bf16(x.data(), n, shift, got.data());
    double want_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float e = std::exp(x[size_t(i)] - shift);
      want_sum += e;
      const uint16_t want = f32_to_bf16(e);
      EXPECT_LE(std::abs(int(got[size_t(i)]) - int(want)), 1) << "n=" << n << " i=" << i << " x=" << x[size_t(i)];
    }
    EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum) << "n=" << n;
    for (int64_t i = n; i < n + 3; ++i) EXPECT_EQ(got[size_t(i)], 0xabcd) << "wrote past n=" << n;
  }
}

// The AVX512_BF16 small matrix product against a plain double-precision product of the same bf16 values,
// with B packed from rows (keys) and from columns (values), row and column tails of its 6 × 64 tiles,
// several packed pieces at column or row offsets (pages), and both overwrite and accumulate.
TEST(Primitives, Avx512Bf16GemmMatchesReference) {
  const CpuPrimitives* avx512 = avx512_primitives();
  if (avx512 == nullptr || avx512->gemm_bf16_pairs == nullptr) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  std::mt19937 rng(7);
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 2}, {6, 64, 64}, {13, 70, 32}, {256, 129, 128}, {5, 17, 258}}) {
    for (bool from_rows : {true, false}) {
      const std::string a = to_dtype_bytes(random_vec(size_t(m * k), rng), DType::kBF16);
      // B [k, n]: from rows, stored as its transpose [n, k]; from columns, as itself [k, n].
      const std::string b = to_dtype_bytes(random_vec(size_t(k * n), rng), DType::kBF16);
      const auto* a16 = reinterpret_cast<const uint16_t*>(a.data());
      const auto* b16 = reinterpret_cast<const uint16_t*>(b.data());
      const int64_t n_pad = packed_columns(n);
      std::vector<uint16_t> packed(size_t(k / 2 * n_pad * 2), 0xffff);  // NaN where nothing is packed
      const int64_t cut = from_rows ? n / 3 : k / 3;  // two pieces, the second at an offset
      if (from_rows) {
        pack_pairs_from_rows(b16, k, cut, k, 0, n_pad, packed.data());
        pack_pairs_from_rows(b16 + cut * k, k, n - cut, k, cut, n_pad, packed.data());
      } else {
        pack_pairs_from_columns(b16, n, cut, n, 0, n_pad, packed.data());
        pack_pairs_from_columns(b16 + cut * n, n, k - cut, n, cut, n_pad, packed.data());
      }
      for (bool accumulate : {false, true}) {
        std::vector<float> got(size_t(m * (n + 3)), 0.5f), want(got.size(), 0.5f);
        avx512->gemm_bf16_pairs(a16, k, packed.data(), m, n, k, got.data(), n + 3, accumulate);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            double sum = accumulate ? 0.5 : 0.0;
            for (int64_t kk = 0; kk < k; ++kk)
              sum += double(bf16_to_f32(a16[i * k + kk])) * bf16_to_f32(from_rows ? b16[j * k + kk] : b16[kk * n + j]);
            want[size_t(i * (n + 3) + j)] = float(sum);
          }
        }
        expect_close(got, want, 1e-5f, ("bf16 gemm m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" +
                                        std::to_string(k) + (from_rows ? " keys" : " values") +
                                        (accumulate ? " accumulate" : "")).c_str());
      }
    }
  }
}

// matmul() against its plain twin on every path: the streaming matvec (n ≤ 8) and the prefill path, in
// the arithmetic this process chose. In bf16 arithmetic (bf16 weights) the twin is given the same
// bf16-rounded activations, so both paths are held to fp32 summation error, not to the rounding.
TEST(Matmul, FastPathsMatchReference) {
  ThreadPool pool(2);
  std::mt19937 rng(3);
  const bool bf16_arithmetic = matmul_arithmetic() == MatmulArithmetic::kBF16;
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 33}) {
      const int64_t k = 131, m = 77;
      auto x = random_vec(size_t(n * k), rng);
      std::string w = to_dtype_bytes(random_vec(size_t(m * k), rng, 0.1f), t);
      auto bias = random_vec(size_t(m), rng);
      std::vector<float> got(size_t(n * m)), want(size_t(n * m));
      matmul(x.data(), w.data(), t, bias.data(), got.data(), n, k, m, pool);
      std::vector<float> x_seen = x;
      if (bf16_arithmetic && t == DType::kBF16)
        for (float& v : x_seen) v = bf16_to_f32(f32_to_bf16(v));
      matmul_reference(x_seen.data(), w.data(), t, bias.data(), want.data(), n, k, m);
      expect_close(got, want, 1e-5f, ("matmul " + std::string(dtype_name(t)) + " n=" + std::to_string(n)).c_str());
    }
  }
}

// matmul_shared_input against the plain twin per output: ragged widths whose pieces straddle the
// threads' split, outputs with and without bias, a group of mixed dtypes (which takes fp32 arithmetic
// for all), decode and prefill row counts, and one product wide enough that each thread's rows take
// more than one oneDNN call (8 MiB of w per call: 1024 rows at k = 4096).
TEST(Matmul, SharedInputMatchesEachProductAlone) {
  ThreadPool pool(2);
  std::mt19937 rng(5);
  const bool bf16_arithmetic = matmul_arithmetic() == MatmulArithmetic::kBF16;
  struct Case {
    int64_t k;
    std::vector<int64_t> widths;
    std::vector<DType> dtypes;
  };
  const std::vector<Case> cases = {
      {131, {77, 5, 130}, {DType::kBF16, DType::kBF16, DType::kBF16}},
      {64, {64, 64}, {DType::kBF16, DType::kBF16}},
      {96, {40, 33}, {DType::kF32, DType::kBF16}},
      {4096, {2600}, {DType::kBF16}},
  };
  for (const Case& c : cases) {
    const bool all_bf16 = std::all_of(c.dtypes.begin(), c.dtypes.end(), [](DType t) { return t == DType::kBF16; });
    for (int64_t n : {1, 4, 9, 33}) {
      if (c.k == 4096 && n != 9) continue;  // the wide case once, on the prefill path
      const auto x = random_vec(size_t(n * c.k), rng);
      std::vector<std::string> w;
      std::vector<std::vector<float>> bias, got, want;
      std::vector<MatmulOutput> outputs;
      for (size_t i = 0; i < c.widths.size(); ++i) {
        const int64_t m = c.widths[i];
        w.push_back(to_dtype_bytes(random_vec(size_t(m * c.k), rng, 0.05f), c.dtypes[i]));
        bias.push_back(i % 2 == 0 ? random_vec(size_t(m), rng) : std::vector<float>());
        got.emplace_back(size_t(n * m), -7.f);
        want.emplace_back(size_t(n * m));
      }
      for (size_t i = 0; i < c.widths.size(); ++i)
        outputs.push_back({w[i].data(), c.dtypes[i], bias[i].empty() ? nullptr : bias[i].data(), got[i].data(),
                           c.widths[i]});
      matmul_shared_input(x.data(), n, c.k, outputs, pool);
      std::vector<float> x_seen = x;
      if (bf16_arithmetic && all_bf16)
        for (float& v : x_seen) v = bf16_to_f32(f32_to_bf16(v));
      for (size_t i = 0; i < c.widths.size(); ++i) {
        matmul_reference(x_seen.data(), w[i].data(), c.dtypes[i], bias[i].empty() ? nullptr : bias[i].data(),
                         want[i].data(), n, c.k, c.widths[i]);
        expect_close(got[i], want[i], 1e-4f, ("shared input k=" + std::to_string(c.k) + " output " + std::to_string(i) +
                                              " n=" + std::to_string(n)).c_str());
      }
    }
  }
}

// Which arithmetic the process chose: bf16 exactly where the CPU has AVX512_BF16 in the chosen SIMD set
// and oneDNN may use it, unless FREEKV_MATMUL=fp32 holds fp32. The ctest runs of this binary cover each
// case this CPU allows: the default, FREEKV_MATMUL=fp32, DNNL_MAX_CPU_ISA=AVX2 (oneDNN as on a CPU
// without AVX-512: it declines, writing nothing) and FREEKV_SIMD=avx2.
TEST(Matmul, ArithmeticIsBf16ExactlyWhereTheCpuHasIt) {
  const char* isa = std::getenv("DNNL_MAX_CPU_ISA");
  const bool onednn_limited = isa != nullptr && std::string(isa) == "AVX2";
  const bool native = __builtin_cpu_supports("avx512bf16") != 0 && !onednn_limited;
  EXPECT_EQ(matmul_bf16_onednn_runs(), native);
  const char* asked = std::getenv("FREEKV_MATMUL");
  const bool fp32_asked = asked != nullptr && std::string(asked) == "fp32";
  const bool dot_in_set = cpu_primitives().matvec_bf16_dot != nullptr;
  EXPECT_EQ(dot_in_set, __builtin_cpu_supports("avx512bf16") != 0 && std::string(cpu_primitives().name) == "avx512");
  EXPECT_EQ(matmul_arithmetic() == MatmulArithmetic::kBF16, native && dot_in_set && !fp32_asked);
  std::mt19937 rng(4);
  // Written into every other column block of a wider output (ldy = m + 5), as matmul() splits w's rows.
  for (auto [n, k, m] : {std::tuple<int64_t, int64_t, int64_t>{9, 132, 77}, {64, 2048, 384}, {300, 1000, 257}}) {
    const std::string x = to_dtype_bytes(random_vec(size_t(n * k), rng), DType::kBF16);
    std::string w = to_dtype_bytes(random_vec(size_t(m * k), rng, 0.05f), DType::kBF16);
    const int64_t ldy = m + 5;
    std::vector<float> got(size_t(n * ldy), -7.f);
    const bool ran = matmul_bf16_onednn(reinterpret_cast<const uint16_t*>(x.data()),
                                        reinterpret_cast<const uint16_t*>(w.data()), got.data(), n, k, m, ldy);
    EXPECT_EQ(ran, native);
    std::vector<float> got_rows(size_t(n * m)), want(size_t(n * m)), x_rounded(size_t(n * k));
    for (int64_t j = 0; j < n; ++j) {
      std::copy(got.begin() + j * ldy, got.begin() + j * ldy + m, got_rows.begin() + j * m);
      for (int64_t c = m; c < ldy; ++c) EXPECT_EQ(got[size_t(j * ldy + c)], -7.f) << "wrote past its columns";
    }
    if (!ran) {
      EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](float v) { return v == -7.f; })) << "declined but wrote";
      continue;
    }
    scalar_primitives().to_f32(x.data(), DType::kBF16, x_rounded.data(), n * k);
    matmul_reference(x_rounded.data(), w.data(), DType::kBF16, nullptr, want.data(), n, k, m);
    expect_close(got_rows, want, 1e-4f, ("onednn bf16 n=" + std::to_string(n) + " k=" + std::to_string(k)).c_str());
  }
}

// The bound of attention_paged against its reference: fp32 summation alone, or where prefill blocks
// multiply in bf16 arithmetic (bf16 K/V, more than one query), the rounding of the scaled queries and of
// the probabilities to bf16 besides (8 significant bits each; up to 2.6e-3 of the largest output seen).
// The products themselves are held to fp32 summation error in Primitives.Avx512Bf16GemmMatchesReference.
float attention_tolerance(int64_t n_q, DType kv_dtype) {
  const bool bf16 = n_q > 1 && kv_dtype == DType::kBF16 && matmul_arithmetic() == MatmulArithmetic::kBF16 &&
                    cpu_primitives().gemm_bf16_pairs != nullptr;
  return bf16 ? 1e-2f : 1e-5f;
}

// A sequence's KV laid out in pages, with a per-head permutation of the slots so that heads hold
// different pages in the same slot (as retrieval will arrange them).
struct TestKv {
  std::vector<std::string> chunks;     // [n_kv_heads * n_slots] chunks of [2][pt][d]
  std::vector<const void*> ptrs;
  PagedKv kv;
};

TestKv make_kv(int64_t n_kv_heads, int64_t n_tokens, int64_t pt, int64_t d, DType t, std::mt19937& rng) {
  TestKv out;
  const int64_t n_slots = (n_tokens + pt - 1) / pt;
  for (int64_t i = 0; i < n_kv_heads * n_slots; ++i) out.chunks.push_back(to_dtype_bytes(random_vec(size_t(2 * pt * d), rng), t));
  for (auto& c : out.chunks) out.ptrs.push_back(c.data());
  out.kv = PagedKv{out.ptrs.data(), n_slots, pt, d, n_kv_heads, n_tokens, t};
  return out;
}

TEST(Attention, FastPathMatchesReference) {
  ThreadPool pool(2);
  std::mt19937 rng(4);
  struct Case { int64_t n_heads, n_kv_heads, d, pt, n_tokens, n_q; bool causal; };
  const Case cases[] = {
      {8, 2, 64, 32, 1000, 1, false},   // decode, GQA 4, page split across threads
      {7, 1, 128, 16, 77, 1, false},    // GQA 7, partial last page
      {4, 4, 64, 8, 40, 40, true},      // prefill from position 0
      {8, 2, 128, 32, 300, 20, true},   // prefill chunk after 280 earlier tokens
      {2, 1, 64, 32, 5000, 1, false},   // long decode, one KV head: splits merge
  };
  for (const Case& c : cases) {
    for (DType t : {DType::kBF16, DType::kF16}) {
      TestKv kv = make_kv(c.n_kv_heads, c.n_tokens, c.pt, c.d, t, rng);
      auto q = random_vec(size_t(c.n_q * c.n_heads * c.d), rng);
      std::vector<float> got(q.size()), want(q.size());
      const int64_t base = c.causal ? c.n_tokens - c.n_q : -1;
      const float scale = 1.f / std::sqrt(float(c.d));
      attention_paged(q.data(), c.n_q, c.n_heads, kv.kv, scale, base, got.data(), pool);
      attention_paged_reference(q.data(), c.n_q, c.n_heads, kv.kv, scale, base, want.data());
      std::string what = "attention heads=" + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) +
                         " d=" + std::to_string(c.d) + " tokens=" + std::to_string(c.n_tokens) + " q=" + std::to_string(c.n_q);
      expect_close(got, want, attention_tolerance(c.n_q, t), what.c_str());
    }
  }
}

TEST(Attention, CausalMaskHidesLaterTokens) {
  // Changing K/V of tokens after a query's position must not change that query's output.
  ThreadPool pool(1);
  std::mt19937 rng(5);
  TestKv kv = make_kv(1, 64, 16, 64, DType::kBF16, rng);
  auto q = random_vec(size_t(64 * 64), rng);
  std::vector<float> a(q.size()), b(q.size());
  attention_paged(q.data(), 64, 1, kv.kv, 0.125f, 0, a.data(), pool);
  kv.chunks[3] = to_dtype_bytes(random_vec(size_t(2 * 16 * 64), rng), DType::kBF16);  // tokens 48..63
  kv.ptrs[3] = kv.chunks[3].data();
  attention_paged(q.data(), 64, 1, kv.kv, 0.125f, 0, b.data(), pool);
  for (int64_t i = 0; i < 48 * 64; ++i) ASSERT_EQ(a[size_t(i)], b[size_t(i)]) << "query " << i / 64;
  bool changed = false;
  for (int64_t i = 48 * 64; i < 64 * 64; ++i) changed |= a[size_t(i)] != b[size_t(i)];
  EXPECT_TRUE(changed);
}

// A windowed layer (Mistral, Qwen2's sliding_window): query i sees kv indices (causal_base + i − W,
// causal_base + i]. Fast path against the reference for windows inside one page, across pages and
// wider than the context, for decode (with page splits) and prefill blocks; then the rule itself:
// changing what lies before every query's window changes nothing, changing the window's first token
// changes the output.
TEST(Attention, SlidingWindowMatchesReferenceAndHidesOlderTokens) {
  ThreadPool pool(2);
  std::mt19937 rng(8);
  struct Case { int64_t n_heads, n_kv_heads, d, pt, n_tokens, n_q, window; };
  const Case cases[] = {
      {8, 2, 64, 16, 300, 1, 5},      // decode, window inside the last page
      {8, 2, 64, 16, 300, 1, 37},     // decode, window across three pages
      {2, 1, 64, 32, 3000, 1, 700},   // decode, one KV head: page splits merge
      {4, 4, 64, 8, 40, 40, 100},     // prefill from 0, window wider than the context
      {8, 2, 128, 16, 400, 150, 37},  // prefill chunk of three query blocks after 250 tokens
      {7, 1, 64, 16, 90, 70, 1},      // a window of one token: each query sees itself
  };
  for (const Case& c : cases) {
    for (DType t : {DType::kBF16, DType::kF16}) {
      TestKv kv = make_kv(c.n_kv_heads, c.n_tokens, c.pt, c.d, t, rng);
      kv.kv.sliding_window = c.window;
      auto q = random_vec(size_t(c.n_q * c.n_heads * c.d), rng);
      std::vector<float> got(q.size()), want(q.size());
      const int64_t base = c.n_tokens - c.n_q;
      attention_paged(q.data(), c.n_q, c.n_heads, kv.kv, 0.125f, base, got.data(), pool);
      attention_paged_reference(q.data(), c.n_q, c.n_heads, kv.kv, 0.125f, base, want.data());
      const std::string what = "window " + std::to_string(c.window) + " tokens=" + std::to_string(c.n_tokens) +
                               " q=" + std::to_string(c.n_q);
      expect_close(got, want, attention_tolerance(c.n_q, t), what.c_str());
      AttentionState st;
      st.reset(c.n_q, c.n_heads, c.d);
      attention_paged_accumulate(q.data(), kv.kv, 0.125f, base, &st, pool);
      std::vector<float> pieced(q.size());
      attention_finish(st, pieced.data());
      expect_close(pieced, want, attention_tolerance(c.n_q, t), (what + " accumulated").c_str());
    }
  }
  // The rule: one KV head, 4-token pages, 40 tokens, the last 10 as queries, a window of 6.
  TestKv kv = make_kv(1, 40, 4, 64, DType::kBF16, rng);
  kv.kv.sliding_window = 6;
  auto q = random_vec(size_t(10 * 64), rng);
  std::vector<float> before(q.size()), after(q.size());
  attention_paged(q.data(), 10, 1, kv.kv, 0.125f, 30, before.data(), pool);
  // Tokens 0..24 lie before every query's window (query 0 at 30 sees 25..30): pages 0..5 and token 24.
  for (int s = 0; s < 6; ++s) {
    kv.chunks[size_t(s)] = to_dtype_bytes(random_vec(size_t(2 * 4 * 64), rng), DType::kBF16);
    kv.ptrs[size_t(s)] = kv.chunks[size_t(s)].data();
  }
  attention_paged(q.data(), 10, 1, kv.kv, 0.125f, 30, after.data(), pool);
  EXPECT_EQ(before, after) << "tokens before the window changed the output";
  // Token 25 (page 6, its second token) is in query 0's window only.
  std::string& page6 = kv.chunks[6];
  const std::string fresh = to_dtype_bytes(random_vec(size_t(2 * 4 * 64), rng), DType::kBF16);
  std::memcpy(page6.data() + 64 * 2, fresh.data() + 64 * 2, 64 * 2);  // key of token 25 (bf16: 2 bytes)
  attention_paged(q.data(), 10, 1, kv.kv, 0.125f, 30, after.data(), pool);
  EXPECT_NE(std::vector<float>(before.begin(), before.begin() + 64), std::vector<float>(after.begin(), after.begin() + 64))
      << "query 0 does not see token 25";
  EXPECT_EQ(std::vector<float>(before.begin() + 64, before.end()), std::vector<float>(after.begin() + 64, after.end()))
      << "queries 1..9 saw token 25, outside their windows";
}

TEST(Attention, EmptySlotsAreSkippedPerHead) {
  // Heads attend different numbers of pages: head h leaves some middle slots empty (null chunks). The
  // fast paths (prefill and decode), the reference and attention over a compacted copy of each head's
  // pages must agree.
  ThreadPool pool(2);
  std::mt19937 rng(11);
  const int64_t n_heads = 8, n_kv = 4, d = 64, pt = 16, n_tokens = 12 * pt + 5;
  for (DType t : {DType::kBF16, DType::kF16}) {
    TestKv kv = make_kv(n_kv, n_tokens, pt, d, t, rng);
    const int64_t n_slots = kv.kv.n_slots;
    // Head 0 keeps every slot, head 1 drops one, head 2 drops five, head 3 drops every slot but the last.
    const std::vector<std::vector<int64_t>> empty = {{}, {4}, {1, 3, 5, 7, 9}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}};
    for (int64_t h = 0; h < n_kv; ++h)
      for (int64_t s : empty[size_t(h)]) kv.ptrs[size_t(h * n_slots + s)] = nullptr;
    // A prefill chunk of 70 causal queries over the same slots (the matrix-product path, which must
    // skip each head's empty slots too), then one decode query.
    {
      const int64_t n_q = 70;
      auto qp = random_vec(size_t(n_q * n_heads * d), rng);
      std::vector<float> got(qp.size()), want(qp.size());
      attention_paged(qp.data(), n_q, n_heads, kv.kv, 0.125f, n_tokens - n_q, got.data(), pool);
      attention_paged_reference(qp.data(), n_q, n_heads, kv.kv, 0.125f, n_tokens - n_q, want.data());
      expect_close(got, want, attention_tolerance(n_q, t), "prefill attention with empty slots vs reference");
    }
    auto q = random_vec(size_t(n_heads * d), rng);
    std::vector<float> got(q.size()), want(q.size());
    attention_paged(q.data(), 1, n_heads, kv.kv, 0.125f, -1, got.data(), pool);
    attention_paged_reference(q.data(), 1, n_heads, kv.kv, 0.125f, -1, want.data());
    expect_close(got, want, 1e-5f, "attention with empty slots vs reference");
    // Each head alone, over only the slots it holds, as a dense single-head view.
    const int64_t group = n_heads / n_kv;
    for (int64_t h = 0; h < n_kv; ++h) {
      std::vector<const void*> held;
      for (int64_t s = 0; s < n_slots; ++s)
        if (kv.ptrs[size_t(h * n_slots + s)] != nullptr) held.push_back(kv.ptrs[size_t(h * n_slots + s)]);
      PagedKv one{held.data(), int64_t(held.size()), pt, d, 1, (int64_t(held.size()) - 1) * pt + 5, t};
      std::vector<float> alone(size_t(group * d)), slice(got.begin() + h * group * d, got.begin() + (h + 1) * group * d);
      attention_paged_reference(q.data() + h * group * d, 1, group, one, 0.125f, -1, alone.data());
      expect_close(slice, alone, 1e-5f, ("head " + std::to_string(h) + " alone over its held pages").c_str());
    }
  }
}

TEST(PagedLayout, IndexMathsOfTheCudaLayoutMatchTheChunksTheCpuAttentionReads) {
  // kernels/shared_math.h's index maths (also compiled into the CUDA kernels): a pool written in its
  // declared loop order [chunk][K, V][token][dim] must be found element by element where
  // paged_elem_offset says, and attention over a row's chunks (pointers made by that maths, token
  // count by paged_row_tokens) must equal attention over the same chunks laid out by hand.
  const int64_t pt = 16, d = 64, n_chunks = 7;
  std::vector<float> pool;
  for (int64_t c = 0; c < n_chunks; ++c)
    for (int half = 0; half < 2; ++half)
      for (int64_t t = 0; t < pt; ++t)
        for (int64_t i = 0; i < d; ++i) pool.push_back(float(((c * 2 + half) * 100 + t) * 100 + i));
  for (int64_t c = 0; c < n_chunks; ++c)
    for (int half = 0; half < 2; ++half)
      for (int64_t t = 0; t < pt; t += 5)
        for (int64_t i = 0; i < d; i += 7)
          ASSERT_EQ(pool[size_t(paged_elem_offset(c, half, t, i, pt, d))], float(((c * 2 + half) * 100 + t) * 100 + i));
  EXPECT_EQ(paged_row_tokens(0, 0, pt), 0);
  EXPECT_EQ(paged_row_tokens(1, 3, pt), 3);
  EXPECT_EQ(paged_row_tokens(4, pt, pt), 4 * pt);
  EXPECT_EQ(paged_row_tokens(4, 1, pt), 3 * pt + 1);

  std::mt19937 rng(21);
  for (auto& v : pool) v = std::normal_distribution<float>(0.f, 1.f)(rng);
  const std::vector<int32_t> row = {5, 0, 3, 6};
  const int64_t last_len = 9, group = 4;
  std::vector<const void*> by_maths, by_hand;
  std::vector<std::vector<float>> copies;
  for (int32_t c : row) {
    by_maths.push_back(pool.data() + paged_elem_offset(c, 0, 0, 0, pt, d));
    copies.emplace_back(pool.begin() + c * 2 * pt * d, pool.begin() + (c + 1) * 2 * pt * d);
    by_hand.push_back(copies.back().data());
  }
  const auto q = random_vec(size_t(group * d), rng);
  std::vector<float> got(q.size()), want(q.size());
  const int64_t n_tokens = paged_row_tokens(int64_t(row.size()), last_len, pt);
  PagedKv a{by_maths.data(), int64_t(row.size()), pt, d, 1, n_tokens, DType::kF32};
  PagedKv b{by_hand.data(), int64_t(row.size()), pt, d, 1, 3 * pt + last_len, DType::kF32};
  attention_paged_reference(q.data(), 1, group, a, 0.125f, -1, got.data());
  attention_paged_reference(q.data(), 1, group, b, 0.125f, -1, want.data());
  expect_close(got, want, 0.f, "attention over chunks placed by paged_elem_offset vs by hand");
}

TEST(Attention, PiecesAccumulateToTheWholeAttention) {
  // KV split into pieces (as prefill streams released pages in groups) and accumulated equals one
  // pass: decode and a causal prefill chunk whose earlier context comes in three groups.
  ThreadPool pool(2);
  std::mt19937 rng(12);
  const int64_t n_heads = 8, n_kv = 2, d = 64, pt = 16;
  for (int64_t n_q : {int64_t(1), int64_t(24)}) {
    const int64_t n_tokens = 20 * pt + 7, past = n_tokens - n_q;
    TestKv kv = make_kv(n_kv, n_tokens, pt, d, DType::kBF16, rng);
    auto q = random_vec(size_t(n_q * n_heads * d), rng);
    std::vector<float> whole(q.size()), pieces(q.size());
    const int64_t causal = n_q > 1 ? past : -1;
    attention_paged(q.data(), n_q, n_heads, kv.kv, 0.125f, causal, whole.data(), pool);
    // Pieces: slots [0,5), [5,9), [9,18) entirely before the chunk, then [18, end) holding the chunk.
    const std::vector<int64_t> cuts = {0, 5, 9, 18, kv.kv.n_slots};
    AttentionState st;
    st.reset(n_q, n_heads, d);
    for (size_t p = 0; p + 1 < cuts.size(); ++p) {
      const int64_t a = cuts[p], b = cuts[p + 1], w = b - a;
      std::vector<const void*> ptrs;
      for (int64_t h = 0; h < n_kv; ++h)
        for (int64_t s = a; s < b; ++s) ptrs.push_back(kv.ptrs[size_t(h * kv.kv.n_slots + s)]);
      const bool last = b == kv.kv.n_slots;
      PagedKv piece{ptrs.data(), w, pt, d, n_kv, last ? n_tokens - a * pt : w * pt, DType::kBF16};
      attention_paged_accumulate(q.data(), piece, 0.125f, last && n_q > 1 ? past - a * pt : -1, &st, pool);
    }
    attention_finish(st, pieces.data());
    expect_close(pieces, whole, attention_tolerance(n_q, DType::kBF16), ("attention in four pieces, n_q=" + std::to_string(n_q)).c_str());
  }
}

TEST(Rope, RotatesPairsByPositionAndKeepsNorm) {
  const int64_t d = 8;
  std::vector<float> inv = {1.f, 0.1f, 0.01f, 0.001f};
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  auto y = x;
  int32_t pos = 3;
  rope_apply(y.data(), &pos, inv.data(), 1, 1, d);
  for (int i = 0; i < 4; ++i) {
    const float c = std::cos(3.f * inv[size_t(i)]), s = std::sin(3.f * inv[size_t(i)]);
    EXPECT_NEAR(y[size_t(i)], x[size_t(i)] * c - x[size_t(i + 4)] * s, 1e-5);
    EXPECT_NEAR(y[size_t(i + 4)], x[size_t(i + 4)] * c + x[size_t(i)] * s, 1e-5);
  }
  int32_t zero = 0;
  auto z = x;
  rope_apply(z.data(), &zero, inv.data(), 1, 1, d);
  EXPECT_EQ(z, x);
}

TEST(RmsNorm, MatchesDefinition) {
  std::vector<float> x = {1, -2, 3, -4};
  std::vector<float> w = {1, 0.5f, 2, 1};
  std::vector<float> y(4);
  rmsnorm(x.data(), w.data(), DType::kF32, 1e-6f, y.data(), 1, 4);
  const float inv = 1.f / std::sqrt((1 + 4 + 9 + 16) / 4.f + 1e-6f);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[size_t(i)], x[size_t(i)] * inv * w[size_t(i)], 1e-6);
}

}  // namespace
}  // namespace freekv

namespace freekv {
namespace {

TEST(Retrieval, BoundScoresAvx2MatchesScalarAndBoundsEveryKey) {
  std::mt19937 rng(6);
  const int64_t d = 64, pt = 16, pages = 9;
  auto keys = random_vec(size_t(pages * pt * d), rng);
  std::string kb = to_dtype_bytes(keys, DType::kBF16);
  std::vector<float> digests(size_t(pages * 2 * d)), stats(size_t(kKeyStatRows * d));
  for (int64_t j = 0; j < pages; ++j) {
    page_key_stats(kb.data() + j * pt * d * 2, DType::kBF16, pt, d, stats.data());
    digest_from_stats(stats.data(), d, DigestKind::kMinMax, digests.data() + j * 2 * d, digests.data() + j * 2 * d + d);
  }
  auto q = random_vec(size_t(d), rng);
  std::vector<float> s(static_cast<size_t>(pages)), ref(static_cast<size_t>(pages));
  bound_scores(q.data(), 1, digests.data(), pages, d, s.data());
  scalar_primitives().bound_scores(q.data(), digests.data(), pages, d, ref.data());
  expect_close(s, ref, 1e-5f, "bound scores");
  // Quest's bound: no key of a page scores above the page's bound.
  for (int64_t j = 0; j < pages; ++j) {
    for (int64_t t = 0; t < pt; ++t) {
      float dot = 0.f;
      for (int64_t i = 0; i < d; ++i) dot += q[size_t(i)] * bf16_to_f32(f32_to_bf16(keys[size_t((j * pt + t) * d + i)]));
      EXPECT_LE(dot, s[size_t(j)] + 1e-4f) << "page " << j << " token " << t;
    }
  }
}

TEST(Retrieval, CenterMadDigestIsCentreAndMeanDeviation) {
  // One dimension, keys 0, 2, 10: centre 5, mean |k - 5| = (5 + 3 + 5) / 3.
  std::vector<float> k = {0.f, 2.f, 10.f};
  float stats[3], u, l;
  page_key_stats(k.data(), DType::kF32, 3, 1, stats);
  EXPECT_EQ(stats[0], 10.f);
  EXPECT_EQ(stats[1], 0.f);
  EXPECT_NEAR(stats[2], 13.f / 3, 1e-6);
  digest_from_stats(stats, 1, DigestKind::kCenterMad, &u, &l);
  EXPECT_NEAR(u, 5.f + 13.f / 3, 1e-6);
  EXPECT_NEAR(l, 5.f - 13.f / 3, 1e-6);
  digest_from_stats(stats, 1, DigestKind::kMinMax, &u, &l);
  EXPECT_EQ(u, 10.f);
  EXPECT_EQ(l, 0.f);
}

}  // namespace
}  // namespace freekv
