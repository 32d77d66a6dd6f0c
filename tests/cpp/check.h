// What every C++ test program of fastserve's core shares: CHECK(condition) and
// check(condition, what), which report a failed check (where, and what) and go on;
// from_hex(), for arguments given as hex; finish(passed), main's return value, which prints
// `passed` only when no check failed (tests/support/cpp.py looks for that line).
//
// Threads: CHECK and check() may be used from any thread at once (the count is atomic).
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace fastserve::testing {

inline std::atomic<int> failures{0};

inline void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "check failed: %s\n", what);
  failures.fetch_add(1);
}

inline void failed_at(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  failures.fetch_add(1);
}

// The bytes that pairs of hex digits spell ("0aff" -> "\x0a\xff").
inline std::string from_hex(const char* hex) {
  std::string bytes;
  for (std::size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(std::string(hex + i, 2), nullptr, 16)));
  }
  return bytes;
}

inline int finish(const char* passed) {
  const int failed = failures.load();
  if (failed != 0) {
    std::fprintf(stderr, "%d check(s) failed\n", failed);
    return EXIT_FAILURE;
  }
  std::printf("%s\n", passed);
  return EXIT_SUCCESS;
}

}  // namespace fastserve::testing

#define CHECK(condition)                                                     \
  do {                                                                       \
    if (!(condition)) ::fastserve::testing::failed_at(__FILE__, __LINE__, #condition); \
  } while (0)
