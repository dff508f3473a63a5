#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "worker/engine/generate.h"
#include "worker/engine/sampler.h"

namespace freekv {
namespace {

TEST(Sampler, GreedyPicksTheMaximumAndTheLowestIdOnTies) {
  const float logits[] = {0.1f, 3.f, -2.f, 3.f};
  Sampler s(SamplingParams{});
  EXPECT_EQ(s.sample(logits, 4), 1);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  const float logits[] = {0.1f, 1.f, 2.5f, 2.4f};
  Sampler k1(SamplingParams{1.0, 1, 1.0, 5}), p0(SamplingParams{1.0, 0, 1e-6, 5});
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(k1.sample(logits, 4), 2);
    EXPECT_EQ(p0.sample(logits, 4), 2);
  }
}

TEST(Sampler, SameSeedSameTokensAndFrequenciesFollowSoftmax) {
  const float logits[] = {0.f, 1.f, 2.f};
  Sampler a(SamplingParams{1.0, 0, 1.0, 42}), b(SamplingParams{1.0, 0, 1.0, 42});
  std::map<int, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    int x = a.sample(logits, 3);
    ASSERT_EQ(x, b.sample(logits, 3));
    counts[x]++;
  }
  const double z = 1 + std::exp(1.0) + std::exp(2.0);
  for (int i = 0; i < 3; ++i) {
    const double p = std::exp(double(i)) / z;
    // 5 standard deviations of a binomial count.
    EXPECT_NEAR(counts[i], n * p, 5 * std::sqrt(n * p * (1 - p))) << "token " << i;
  }
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingTheMass) {
  // Probabilities ≈ 0.665, 0.245, 0.090: top_p 0.8 keeps the first two only.
  const float logits[] = {2.f, 1.f, 0.f};
  Sampler s(SamplingParams{1.0, 0, 0.8, 1});
  for (int i = 0; i < 2000; ++i) EXPECT_NE(s.sample(logits, 3), 2);
}

TEST(Sampler, RejectsBadValues) {
  EXPECT_FALSE(validate_sampling({-0.5, 0, 1, 0}).ok());
  EXPECT_FALSE(validate_sampling({1, -1, 1, 0}).ok());
  EXPECT_FALSE(validate_sampling({1, 0, 1.5, 0}).ok());
  EXPECT_FALSE(validate_sampling({NAN, 0, 1, 0}).ok());
  EXPECT_TRUE(validate_sampling({0.7, 40, 0.9, 0}).ok());
}

TEST(StopStrings, HoldsBackPossiblePrefixesAndCutsAtTheFirstStop) {
  StopStringFilter f({"END", "\n\n"});
  EXPECT_EQ(f.push("hello E"), "hello ");
  EXPECT_EQ(f.push("N"), "");
  EXPECT_EQ(f.push("x"), "ENx");
  EXPECT_EQ(f.push(" more\n"), " more");
  EXPECT_EQ(f.push("\nafter"), "");
  EXPECT_TRUE(f.stopped());
  EXPECT_EQ(f.flush(), "");
  StopStringFilter g({"stop"});
  EXPECT_EQ(g.push("no sto"), "no ");
  EXPECT_EQ(g.flush(), "sto");
}

}  // namespace
}  // namespace freekv
