// SnapshotCell (csrc/table/snapshot.h) alone: built by tests/test_cpp_core.py under ThreadSanitizer
// and AddressSanitizer. Readers pin values while one writer replaces and frees them: a value
// freed while a reader still uses it is a use-after-free (ASan) or a race between the reader's
// reads and the writer's delete (TSan), and each value also counts its pins so that the writer
// checks the grace period itself, sanitizer or not.
//
// Checked to fail: with no grace period (both checks and ASan), with a relaxed guard drop
// (TSan). What no test here catches on x86: weakening the four seq_cst operations of read()
// and publish() that the store->load pattern needs (see snapshot.h).
#include "check.h"
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "table/snapshot.h"

using fastserve::SnapshotCell;

using fastserve::testing::check;
using fastserve::testing::finish;

namespace {



constexpr std::int64_t kAlive = 0x5eed;

std::atomic<int> alive{0};

// A published value: plain fields a reader reads, a count of the guards now pinning it. The
// count is relaxed on purpose: it must not order readers and writer itself, or it would hide
// from TSan a guard drop that no longer orders the reader's reads before the writer's free.
struct Value {
  explicit Value(std::int64_t n) : number(n), square(n * n) { ++alive; }
  ~Value() {
    magic = 0;  // a reader seeing this read a freed value (if the sanitizer did not stop it)
    --alive;
  }
  std::int64_t magic = kAlive;
  std::int64_t number;
  std::int64_t square;
  mutable std::atomic<int> pins{0};
};

void guard_pins_value() {
  SnapshotCell<Value> cell(std::make_unique<const Value>(1));
  {
    auto guard = cell.read();
    check(guard->number == 1, "reads the initial value");
  }
  auto old = cell.publish(std::make_unique<const Value>(2));
  check(old->number == 1, "publish hands back the old value");
  check(cell.read()->number == 2, "reads the new value");
}

// Readers read without pause; the writer publishes, and when publish() returns no reader may
// still pin the old value: it checks the pins, then frees it at once.
void readers_and_writer() {
  const int before = alive.load();
  {
    SnapshotCell<Value> cell(std::make_unique<const Value>(0));
    std::atomic<bool> stop{false};
    std::atomic<long> reads{0};
    std::vector<std::thread> readers;
    for (int r = 0; r < 3; ++r) {
      readers.emplace_back([&] {
        std::int64_t last = 0;
        while (!stop.load()) {
          auto guard = cell.read();
          guard->pins.fetch_add(1, std::memory_order_relaxed);
          check(guard->magic == kAlive, "a pinned value is alive");
          check(guard->square == guard->number * guard->number, "a pinned value is whole");
          check(guard->number >= last, "values only move forward for one reader");
          last = guard->number;
          std::this_thread::yield();  // hold the guard across a writer's flip now and then
          check(guard->magic == kAlive, "a pinned value stays alive");
          guard->pins.fetch_sub(1, std::memory_order_relaxed);
          ++reads;
        }
      });
    }
    // At least 2000 publishes, and on until the readers have read often enough to have met
    // them (on a loaded machine they may not be scheduled during the first ones).
    for (std::int64_t n = 1; n <= 2000 || reads.load() < 20000; ++n) {
      std::unique_ptr<const Value> old = cell.publish(std::make_unique<const Value>(n));
      check(old->pins.load(std::memory_order_relaxed) == 0, "no reader pins a value once publish() returned");
    }
    stop = true;
    for (auto& reader : readers) reader.join();
    check(reads.load() > 0, "readers made progress");
  }
  check(alive.load() == before, "every value freed");
}

}  // namespace

int main() {
  guard_pins_value();
  readers_and_writer();
  return finish("all snapshot checks passed");
}
