// Runs a libFuzzer target without libFuzzer: every file of the seed corpus, then `--mutations N`
// deterministic mutations of them (bit flips, truncations, byte insertions, block copies). A crash,
// sanitizer report or hang fails the test; returning normally on garbage is the pass condition.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static std::string mutate(std::string s, std::mt19937_64& rng) {
  int edits = 1 + int(rng() % 8);
  for (int e = 0; e < edits; ++e) {
    switch (rng() % 5) {
      case 0:
        if (!s.empty()) s[rng() % s.size()] ^= char(1u << (rng() % 8));
        break;
      case 1:
        if (!s.empty()) s.resize(rng() % s.size());
        break;
      case 2:
        s.insert(s.begin() + (s.empty() ? 0 : rng() % (s.size() + 1)), char(rng() & 0xff));
        break;
      case 3:
        if (s.size() > 2) {
          size_t a = rng() % s.size(), len = 1 + rng() % std::min<size_t>(64, s.size() - a);
          std::string block = s.substr(a, len);
          s.insert(rng() % (s.size() + 1), block);
        }
        break;
      default:
        if (!s.empty()) {
          static const char kSyntax[] = {'"', '{', '}', '[', ']', ':', ',', '0', '-', '9', '\\', '\xff', '\0'};
          s[rng() % s.size()] = kSyntax[rng() % sizeof(kSyntax)];
        }
        break;
    }
  }
  return s;
}

int main(int argc, char** argv) {
  long mutations = 0;
  std::vector<std::string> seeds;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--mutations" && i + 1 < argc) {
      mutations = std::strtol(argv[++i], nullptr, 10);
      continue;
    }
    std::filesystem::path p(arg);
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(p)) {
      for (auto& entry : std::filesystem::directory_iterator(p)) files.push_back(entry.path());
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(p);
    }
    for (auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      seeds.push_back(ss.str());
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "replay: no seed inputs given; pass a corpus directory or files\n");
    return 2;
  }
  for (auto& s : seeds) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  std::mt19937_64 rng(20250519);
  for (long i = 0; i < mutations; ++i) {
    std::string m = mutate(seeds[rng() % seeds.size()], rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(m.data()), m.size());
  }
  std::printf("replay: %zu seeds and %ld mutations ran without a fault\n", seeds.size(), mutations);
  return 0;
}
