// The batching scheduler: per-queue batches formed from many producers' tasks, handed to a
// shared pool of batch threads.
//
// Threads and the GIL: never touches Python itself; every member of Task and BatchScheduler
// may be called from any thread, with or without the GIL. Each takes a mutex briefly and
// never waits for the GIL while holding it, so the short calls may be made holding the GIL;
// Task::wait() and BatchScheduler::next_batch() block: Python callers release the GIL around
// them (the bindings do). Payloads are opaque and their deleters may take the GIL: the
// scheduler and tasks drop payloads only with no lock of their own held, on whichever thread
// drops the last reference (a producer, a batch thread, or the one destroying the scheduler).
// A task's on_finish callback runs on the thread that ends the task, holding whatever that
// thread holds (the GIL, if a Python thread completed it; the scheduler's mutex, when
// next_batch() expires it): it must only queue work (take a lock that is never held while
// waiting for the GIL or the scheduler).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "table/servable_table.h"  // Payload

namespace fastserve {

using Clock = std::chrono::steady_clock;

// How one queue forms batches (TF Serving's BatchingParameters, per queue).
struct BatchOptions {
  // The most rows a batch holds (with splitting: the most rows a task may have).
  std::int64_t max_batch_size = 1000;
  // How long a batch waits for more tasks after its first one arrived.
  std::int64_t batch_timeout_micros = 0;
  // The most batches (open or waiting) a queue holds; past it, submit fails.
  std::int64_t max_enqueued_batches = 100;
  // Split tasks across batches so that no batch exceeds max_execution_batch_size rows.
  bool enable_large_batch_splitting = false;
  std::int64_t max_execution_batch_size = 0;  // used when splitting; 0 = max_batch_size

  std::int64_t batch_capacity() const {
    return enable_large_batch_splitting && max_execution_batch_size > 0
               ? max_execution_batch_size
               : max_batch_size;
  }
};

// What became of a task.
enum class TaskOutcome : int {
  kPending = 0,
  kDone = 1,       // every part completed
  kFailed = 2,     // a part failed; error() says why
  kCancelled = 3,  // the producer gave up before it ran
  kExpired = 4,    // its deadline passed while it was queued
};

// One request's rows, perhaps split into parts that run in different batches. The producer
// submits it and waits; batch threads complete its parts. Thread-safe.
class Task {
 public:
  Task(Payload input, std::int64_t rows, std::optional<Clock::time_point> deadline);
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  const Payload& input() const { return input_; }
  std::int64_t rows() const { return rows_; }
  std::optional<Clock::time_point> deadline() const { return deadline_; }

  // Producer side. wait() blocks until the task finished, or `until` passed (then it
  // returns kPending). abandon() ends a task that has not started running with `why`
  // (kCancelled or kExpired) and wakes its waiter; it returns false once the task runs, whose
  // result then arrives as usual.
  TaskOutcome wait(std::optional<Clock::time_point> until);
  bool abandon(TaskOutcome why);
  // Instead of waiting: runs `callback` once the task ended (done, failed, cancelled or
  // expired), on the thread that ends it after every lock of the task is dropped, or at once
  // on this thread if it already ended. One callback per task (a second replaces the first
  // if it has not run yet); it must not throw.
  void on_finish(std::function<void()> callback);
  TaskOutcome outcome() const;
  // The parts' outputs in order (valid once kDone), or the error (once kFailed).
  std::vector<Payload> outputs() const;
  Payload error() const;

  // Batch-thread side.
  void complete(std::size_t part, Payload output);
  void fail(Payload error);

 private:
  friend class BatchScheduler;
  // Called with the scheduler's lock held, before the task is queued.
  void set_parts(std::size_t parts);
  // Called when a batch holding one of its parts is handed to a batch thread; false if the
  // task already ended (then the part is dropped).
  bool start();
  // Wakes the waiter and runs the on_finish callback taken from the ended task.
  void announce(std::function<void()> then);

  const Payload input_;
  const std::int64_t rows_;
  const std::optional<Clock::time_point> deadline_;
  mutable std::mutex mutex_;
  std::condition_variable finished_;
  TaskOutcome outcome_ = TaskOutcome::kPending;
  bool started_ = false;
  std::size_t parts_left_ = 1;
  std::vector<Payload> outputs_;
  Payload error_;
  std::function<void()> on_finish_;
};

// A slice of a task inside a batch: rows [offset, offset + rows) of the task's input.
struct BatchEntry {
  std::shared_ptr<Task> task;
  std::size_t part = 0;
  std::int64_t offset = 0;
  std::int64_t rows = 0;
};

struct Batch {
  std::int64_t queue_id = -1;
  std::string key;  // tasks batch together only with tasks of the same key
  std::vector<BatchEntry> entries;
  std::int64_t rows = 0;
  Clock::time_point opened;
};

enum class SubmitStatus : int {
  kOk = 0,
  kQueueFull = 1,   // max_enqueued_batches reached
  kTooLarge = 2,    // more rows than max_batch_size
  kNoQueue = 3,     // the queue was removed
  kEmpty = 4,       // a task without rows
};

// Queues of batches and the batch threads' hand-over point.
//
// Producers submit() tasks to a queue; a task joins its queue's open batch for its key, or
// opens a new one when it does not fit (a full batch is closed at once). A batch becomes ready
// when it is full or batch_timeout_micros after its first task. Batch threads call
// next_batch(), which hands out ready batches taking the queues in turn, so threads are
// shared fairly; entries whose task was cancelled or has expired are ended there and never
// run. remove_queue() stops new tasks and lets the queued ones drain.
class BatchScheduler {
 public:
  BatchScheduler() = default;
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  std::int64_t add_queue(const BatchOptions& options);
  // Stops new submissions; batches already queued are still handed out (as if timed out).
  void remove_queue(std::int64_t queue_id);
  SubmitStatus submit(std::int64_t queue_id, const std::string& key,
                      const std::shared_ptr<Task>& task);
  // Blocks until a batch is ready (returns it), the scheduler stops, or `timeout_seconds`
  // passes (negative: no limit); returns nothing in the last two cases.
  std::optional<Batch> next_batch(double timeout_seconds);
  void stop();

  // Rows queued, and batches enqueued (open or ready), in one queue.
  std::int64_t queued_rows(std::int64_t queue_id) const;
  std::int64_t enqueued_batches(std::int64_t queue_id) const;

 private:
  struct Queue {
    BatchOptions options;
    std::map<std::string, Batch> open;  // by key
    std::deque<Batch> ready;
    bool removed = false;
    std::int64_t batches() const {
      return static_cast<std::int64_t>(open.size() + ready.size());
    }
  };

  // Moves timed-out (or, for a removed queue, all) open batches of `queue` to ready, and
  // returns the earliest time another open batch will time out.
  std::optional<Clock::time_point> close_due(Queue& queue, Clock::time_point now);

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::int64_t, Queue> queues_;
  std::int64_t next_queue_id_ = 0;
  std::int64_t turn_ = 0;  // the queue id to look at first next time
  bool stopped_ = false;
};

}  // namespace fastserve
