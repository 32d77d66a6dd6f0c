// An immutable value that readers pin without a lock and writers replace by
// copy-on-write, with a grace period before the old value is freed.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

namespace fastserve {

// SnapshotCell<T> holds one immutable T.
//
// Threads and the GIL: never touches Python; callable with or without the GIL. read() may be
// called from any number of threads at once, and its guard dropped on the thread that took it
// or any other. publish() may be called from any thread, but by one writer at a time (the
// caller serialises writers). publish() waits (spinning, yielding) for the guards that may
// still see the old value, so a thread must not call publish() while it holds a guard of the
// same cell, and a guard must not be held while waiting for something a writer might hold
// (a lock, the GIL): read, copy out, drop.
//
// Readers call read(); the returned guard pins the current T until it goes out
// of scope. read() is wait-free: one load, one increment, one load.
//
// A writer builds a new T and calls publish(). publish() swaps the pointer and
// then waits for a grace period: every reader that could still see the old T
// has dropped its guard. Only then is the old T freed (by the caller, who gets it
// back). Writers must be serialised by the caller (publish() is not safe against
// a second writer).
//
// The grace period uses two reader counters selected by the parity of an epoch.
// A writer flips the epoch twice and each time waits for the counter of the
// parity it just left to drain, so a reader that loaded a stale epoch is still
// waited for. New readers always land on the counter not being drained, so a
// steady stream of readers cannot starve a writer.
//
// Memory order: the grace period rests on a store->load pattern (Dekker's, or "store
// buffering") across two locations, the reader counter and current_:
//
//   reader (read)                      writer (publish, then synchronize)
//   (R1) counter.fetch_add(1)          (W1) current_.exchange(next)
//   (R2) current_.load()               (W2) counter.load() until it reads 0
//
// The writer may free the old T only if every reader either is seen by W2 (its R1 counted)
// or sees the new T at R2. That holds when R1, R2, W1 and W2 are all seq_cst: they are then
// in one total order, and if W2 precedes R1 in it then W1 precedes R2, so R2 reads the new
// pointer. With acquire/release alone (or anything weaker) the two loads may both read the
// old values (R2 the old pointer, W2 a count of 0): each store may still sit in its own core's
// store buffer when the other thread loads, so the writer frees a T a reader is about to use.
// So all four operations are seq_cst, and must stay so; see the comments at each. (The
// fetch_sub that drops a guard needs only release, W2 only acquire to pair with it; the epoch
// only spreads readers over the counters and is not part of the proof. They are seq_cst too:
// on x86 a seq_cst read-modify-write or load costs no more than a weaker one.)
//
// ThreadSanitizer does not model store buffering, and x86 only reorders a store after a later
// load of another location through its store buffer, which no test can provoke on purpose:
// weakening R1, R2, W1 or W2 passes tests/cpp/snapshot_test.cc under TSan on x86. That test
// does catch a guard drop that no longer releases (TSan sees the free race the reader's
// reads). Review edits here against the argument above, not against the tests.
//
// Guards must be short-lived: a writer spins (yielding) while a guard is held.
template <typename T>
class SnapshotCell {
 public:
  class ReadGuard {
   public:
    ReadGuard(const ReadGuard&) = delete;
    ReadGuard& operator=(const ReadGuard&) = delete;
    // Release at least: the reader's uses of *value_ happen before the writer, seeing the
    // count drop (W2), frees it.
    ~ReadGuard() { counter_->fetch_sub(1, std::memory_order_seq_cst); }
    const T& operator*() const { return *value_; }
    const T* operator->() const { return value_; }

   private:
    friend class SnapshotCell;
    ReadGuard(const T* value, std::atomic<std::int64_t>* counter)
        : value_(value), counter_(counter) {}
    const T* value_;
    std::atomic<std::int64_t>* counter_;
  };

  explicit SnapshotCell(std::unique_ptr<const T> initial)
      : current_(initial.release()) {}
  SnapshotCell(const SnapshotCell&) = delete;
  SnapshotCell& operator=(const SnapshotCell&) = delete;
  // No reader or writer may still be using the cell.
  ~SnapshotCell() { std::unique_ptr<const T> last(current_.load(std::memory_order_seq_cst)); }

  ReadGuard read() const {
    const std::uint64_t epoch = epoch_.load(std::memory_order_seq_cst);
    std::atomic<std::int64_t>* counter = &readers_[epoch & 1].count;
    // R1 and R2 (see the class comment): both must be seq_cst. Do not weaken to
    // acq_rel/acquire: R2 could then read the old pointer while the writer's W2 misses R1.
    counter->fetch_add(1, std::memory_order_seq_cst);
    return ReadGuard(current_.load(std::memory_order_seq_cst), counter);
  }

  // Replaces the value; returns once no reader can still see the old one, and
  // hands the old one back so the caller decides where it is destroyed.
  std::unique_ptr<const T> publish(std::unique_ptr<const T> next) {
    // W1 (see the class comment): must be seq_cst, not merely acq_rel, for the store->load
    // pattern with read(); it also publishes *next to readers.
    std::unique_ptr<const T> old(
        current_.exchange(next.release(), std::memory_order_seq_cst));
    synchronize();
    return old;
  }

 private:
  void synchronize() {
    for (int flip = 0; flip < 2; ++flip) {
      const std::uint64_t left = epoch_.fetch_add(1, std::memory_order_seq_cst);
      const std::atomic<std::int64_t>& counter = readers_[left & 1].count;
      // W2 (see the class comment): must be seq_cst, not merely acquire, for the store->load
      // pattern with read(); reading 0 also acquires the readers' guard drops.
      while (counter.load(std::memory_order_seq_cst) != 0) {
        std::this_thread::yield();
      }
    }
  }

  struct alignas(64) Counter {
    std::atomic<std::int64_t> count{0};
  };
  mutable Counter readers_[2];
  alignas(64) std::atomic<std::uint64_t> epoch_{0};
  alignas(64) std::atomic<const T*> current_;
};

}  // namespace fastserve
