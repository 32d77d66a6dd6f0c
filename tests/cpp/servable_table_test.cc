// The C++ servable table without Python: built by tests/test_cpp_core.py under
// ThreadSanitizer and AddressSanitizer, which fail the run on any race or memory error.
#include "check.h"
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "table/servable_table.h"

using fastserve::LookupStatus;
using fastserve::Payload;
using fastserve::ServableTable;

using fastserve::testing::check;
using fastserve::testing::finish;

namespace {



// A payload that records its version, and counts how many are alive.
std::atomic<int> alive{0};
struct Model {
  explicit Model(std::int64_t v) : version(v) { ++alive; }
  ~Model() { --alive; }
  std::int64_t version;
};

Payload make(std::int64_t version) {
  return Payload(std::make_unique<Model>(version).release(),
                 [](void* raw) { std::unique_ptr<Model> owned(static_cast<Model*>(raw)); });
}

std::int64_t version_of(void* payload) { return static_cast<Model*>(payload)->version; }

void resolution() {
  ServableTable table;
  check(table.add("m", 1, make(1)), "add 1");
  check(table.add("m", 3, make(3)), "add 3");
  check(!table.add("m", 3, make(3)), "add 3 twice is refused");
  check(table.acquire_latest("m").handle.version() == 3, "latest is 3");
  check(version_of(table.acquire_version("m", 1).handle.payload()) == 1, "specific 1");
  check(table.acquire_version("m", 2).status == LookupStatus::kVersionNotFound, "2 missing");
  check(table.acquire_latest("x").status == LookupStatus::kModelNotFound, "x missing");
  table.set_labels("m", {{"stable", 1}, {"next", 9}});
  check(table.acquire_label("m", "stable").handle.version() == 1, "label stable");
  auto next = table.acquire_label("m", "next");
  check(next.status == LookupStatus::kVersionNotFound && next.version == 9, "label to missing");
  check(table.acquire_label("m", "gold").status == LookupStatus::kLabelNotFound, "no label");
}

void handle_delays_release() {
  ServableTable table;
  table.add("m", 1, make(1));
  auto held = table.acquire_latest("m");
  check(table.remove("m", 1), "remove");
  check(table.acquire_latest("m").status == LookupStatus::kModelNotFound, "gone after remove");
  check(!table.wait_until_released("m", 1, 0.05), "held handle blocks release");
  std::atomic<bool> released{false};
  std::thread waiter([&] {
    table.wait_until_released("m", 1, -1);
    released = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  check(!released, "waiter still waiting");
  check(version_of(held.handle.payload()) == 1, "payload alive while held");
  held.handle.release();
  waiter.join();
  check(released, "waiter released");
}

// The two-step release a caller holding the GIL uses (handle_object.cc): only the last hold on
// a removed version has waiters to wake, and they wake once the caller wakes them.
void deferred_wake() {
  ServableTable table;
  table.add("m", 1, make(1));
  auto kept = table.acquire_latest("m");
  check(!table.acquire_latest("m").handle.release_deferring_wake(),
        "a hold on a version in the table has nobody to wake");
  auto first = table.acquire_latest("m");
  auto last = table.acquire_latest("m");
  kept.handle.release();
  check(table.remove("m", 1), "remove");
  check(!first.handle.release_deferring_wake(), "not the last hold: nobody to wake");
  std::atomic<bool> released{false};
  std::thread waiter([&] {
    table.wait_until_released("m", 1, -1);
    released = true;
  });
  auto removed = last.handle.release_deferring_wake();
  check(removed != nullptr, "the last hold on a removed version hands it back to wake");
  check(!last.handle.release_deferring_wake(), "idempotent");
  if (removed) removed->wake_waiters();
  waiter.join();
  check(released, "the waiter woke");
}

void readers_and_writers() {
  const int before = alive.load();
  {
    ServableTable table;
    table.add("m", 0, make(0));
    std::atomic<bool> stop{false};
    std::atomic<long> lookups{0};
    std::vector<std::thread> readers;
    for (int r = 0; r < 4; ++r) {
      readers.emplace_back([&, r] {
        std::mt19937 rng(r);
        while (!stop) {
          const std::int64_t want = static_cast<std::int64_t>(rng() % 4);
          auto found = want == 0 ? table.acquire_latest("m") : table.acquire_version("m", want);
          if (found.status == LookupStatus::kOk) {
            const std::int64_t got = version_of(found.handle.payload());
            check(got == found.handle.version(), "payload matches its version");
            if (want != 0) check(got == want, "specific version matches");
            ++lookups;
          }
        }
      });
    }
    std::mt19937 rng(99);
    // At least 300 writes, and on until the readers have looked up often enough to have met
    // them (on a loaded machine the readers may not be scheduled during the first writes).
    for (int i = 0; i < 300 || lookups.load() < 1000; ++i) {
      const std::int64_t v = 1 + static_cast<std::int64_t>(rng() % 3);
      if (!table.add("m", v, make(v))) {
        table.remove("m", v);
        check(table.wait_until_released("m", v, 10.0), "released within 10s");
      }
    }
    stop = true;
    for (auto& t : readers) t.join();
    check(lookups > 0, "readers made progress");
  }
  check(alive.load() == before, "every payload freed");
}

}  // namespace

int main() {
  resolution();
  handle_delays_release();
  deferred_wake();
  readers_and_writers();
  return finish("all servable table checks passed");
}
