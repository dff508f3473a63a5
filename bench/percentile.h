// The p-quantile (p in [0, 1]) of a sample, nearest rank; 0 for an empty sample. Shared by the
// serving and load benchmarks.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace freekv {

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[size_t(std::min<double>(double(v.size() - 1), std::floor(p * double(v.size() - 1) + 0.5)))];
}

}  // namespace freekv
