// The C++ batch scheduler without Python: built by tests/test_cpp_core.py under
// ThreadSanitizer and AddressSanitizer, which fail the run on any race or memory error.
#include "check.h"
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "batching/batch_queue.h"

using fastserve::Batch;
using fastserve::BatchOptions;
using fastserve::BatchScheduler;
using fastserve::Clock;
using fastserve::Payload;
using fastserve::SubmitStatus;
using fastserve::Task;
using fastserve::TaskOutcome;

using fastserve::testing::check;
using fastserve::testing::finish;

namespace {



// A payload holding an integer: a task's id in, and "id * 1000 + first row" out.
Payload number(std::int64_t value) {
  return Payload(std::make_unique<std::int64_t>(value).release(),
                 [](void* raw) { std::unique_ptr<std::int64_t> owned(static_cast<std::int64_t*>(raw)); });
}
std::int64_t value_of(const Payload& payload) { return *static_cast<std::int64_t*>(payload.get()); }

BatchOptions options(std::int64_t max_batch, std::int64_t timeout_micros, std::int64_t max_batches) {
  BatchOptions o;
  o.max_batch_size = max_batch;
  o.batch_timeout_micros = timeout_micros;
  o.max_enqueued_batches = max_batches;
  return o;
}

void full_batches_close_at_once_and_timeouts_close_the_rest() {
  BatchScheduler scheduler;
  const auto queue = scheduler.add_queue(options(4, 60'000'000, 10));
  auto a = std::make_shared<Task>(number(1), 3, std::nullopt);
  auto b = std::make_shared<Task>(number(2), 2, std::nullopt);  // does not fit: closes a's batch
  check(scheduler.submit(queue, "k", a) == SubmitStatus::kOk, "submit a");
  check(scheduler.submit(queue, "k", b) == SubmitStatus::kOk, "submit b");
  auto first = scheduler.next_batch(0);
  check(first && first->rows == 3 && first->entries.size() == 1, "a's batch is ready at once");
  check(!scheduler.next_batch(0.05), "b's batch waits for its timeout");
  scheduler.remove_queue(queue);  // a removed queue drains what it holds
  auto second = scheduler.next_batch(1);
  check(second && second->rows == 2, "b's batch after the queue was removed");
  check(scheduler.submit(queue, "k", a) == SubmitStatus::kNoQueue, "removed queue refuses");
}

void limits() {
  BatchScheduler scheduler;
  const auto queue = scheduler.add_queue(options(4, 60'000'000, 2));
  check(scheduler.submit(queue, "k", std::make_shared<Task>(number(1), 5, std::nullopt)) ==
            SubmitStatus::kTooLarge, "too large");
  check(scheduler.submit(queue, "k", std::make_shared<Task>(number(1), 0, std::nullopt)) ==
            SubmitStatus::kEmpty, "empty");
  check(scheduler.submit(queue, "k", std::make_shared<Task>(number(1), 3, std::nullopt)) == SubmitStatus::kOk, "1");
  check(scheduler.submit(queue, "k", std::make_shared<Task>(number(2), 3, std::nullopt)) == SubmitStatus::kOk, "2");
  check(scheduler.submit(queue, "k", std::make_shared<Task>(number(3), 3, std::nullopt)) ==
            SubmitStatus::kQueueFull, "a third batch is one too many");
  check(scheduler.submit(queue, "k", std::make_shared<Task>(number(4), 1, std::nullopt)) == SubmitStatus::kOk,
        "a task that fits the open batch is still taken");
}

void splitting() {
  BatchScheduler scheduler;
  BatchOptions o = options(10, 60'000'000, 10);
  o.enable_large_batch_splitting = true;
  o.max_execution_batch_size = 4;
  const auto queue = scheduler.add_queue(o);
  auto small = std::make_shared<Task>(number(1), 1, std::nullopt);
  auto large = std::make_shared<Task>(number(2), 10, std::nullopt);
  scheduler.submit(queue, "k", small);
  scheduler.submit(queue, "k", large);  // 3 fill small's batch, then 4, then 3
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> large_parts;
  scheduler.remove_queue(queue);
  while (auto batch = scheduler.next_batch(0)) {
    sizes.push_back(batch->rows);
    for (auto& entry : batch->entries) {
      if (entry.task == large) large_parts.push_back(entry.rows);
      entry.task->complete(entry.part, number(entry.offset));
    }
  }
  check((sizes == std::vector<std::int64_t>{4, 4, 3}), "batches of 4, 4, 3");
  check((large_parts == std::vector<std::int64_t>{3, 4, 3}), "the large task in parts 3, 4, 3");
  check(large->wait(std::nullopt) == TaskOutcome::kDone, "large done");
  auto outputs = large->outputs();
  check(outputs.size() == 3 && value_of(outputs[0]) == 0 && value_of(outputs[1]) == 3 &&
            value_of(outputs[2]) == 7, "parts in order with their offsets");
}

void deadlines_and_abandoned_tasks_never_run() {
  BatchScheduler scheduler;
  const auto queue = scheduler.add_queue(options(8, 60'000'000, 10));
  auto expired = std::make_shared<Task>(number(1), 1, Clock::now() - std::chrono::seconds(1));
  auto abandoned = std::make_shared<Task>(number(2), 1, std::nullopt);
  auto live = std::make_shared<Task>(number(3), 1, std::nullopt);
  scheduler.submit(queue, "k", expired);
  scheduler.submit(queue, "k", abandoned);
  scheduler.submit(queue, "k", live);
  check(abandoned->abandon(TaskOutcome::kCancelled), "abandon before it runs");
  scheduler.remove_queue(queue);
  auto batch = scheduler.next_batch(1);
  check(batch && batch->entries.size() == 1 && batch->entries[0].task == live, "only the live task runs");
  check(expired->outcome() == TaskOutcome::kExpired, "expired");
  check(!live->abandon(TaskOutcome::kCancelled), "a running task cannot be abandoned");
  live->fail(number(-1));
  check(live->wait(std::nullopt) == TaskOutcome::kFailed && value_of(live->error()) == -1, "failed");
}

void on_finish_runs_once_when_the_task_ends() {
  // Done (after its last part), failed, abandoned, expired in next_batch, and registered on
  // a task that had already ended (runs at once): each callback once, after the outcome is set.
  BatchScheduler scheduler;
  const auto queue = scheduler.add_queue(options(4, 60'000'000, 10));
  BatchOptions split = options(8, 60'000'000, 10);
  split.enable_large_batch_splitting = true;
  split.max_execution_batch_size = 4;
  const auto split_queue = scheduler.add_queue(split);
  auto done = std::make_shared<Task>(number(1), 6, std::nullopt);
  auto failed = std::make_shared<Task>(number(2), 1, std::nullopt);
  auto abandoned = std::make_shared<Task>(number(3), 1, std::nullopt);
  auto expired = std::make_shared<Task>(number(4), 1, Clock::now() - std::chrono::seconds(1));
  std::map<std::int64_t, int> calls;  // by task id
  std::map<std::int64_t, TaskOutcome> seen;
  for (const auto& task : {done, failed, abandoned, expired}) {
    const std::int64_t id = value_of(task->input());
    std::weak_ptr<Task> weak = task;
    task->on_finish([&calls, &seen, id, weak] {
      ++calls[id];
      if (auto alive = weak.lock()) seen[id] = alive->outcome();
    });
  }
  check(scheduler.submit(split_queue, "k", done) == SubmitStatus::kOk, "submit the split task");
  check(scheduler.submit(queue, "k", failed) == SubmitStatus::kOk, "submit");
  check(scheduler.submit(queue, "k", abandoned) == SubmitStatus::kOk, "submit");
  check(scheduler.submit(queue, "k", expired) == SubmitStatus::kOk, "submit");
  check(abandoned->abandon(TaskOutcome::kCancelled), "abandon");
  check(calls[3] == 1 && seen[3] == TaskOutcome::kCancelled, "abandoned: called once");
  scheduler.remove_queue(queue);
  scheduler.remove_queue(split_queue);
  int parts = 0;
  while (auto batch = scheduler.next_batch(0.5)) {
    for (auto& entry : batch->entries) {
      if (entry.task == failed) {
        entry.task->fail(number(-1));
      } else {
        check(calls[1] == 0, "not before the last part");
        entry.task->complete(entry.part, number(0));
        ++parts;
      }
    }
  }
  check(parts == 2, "the split task ran in two parts");
  check(calls[1] == 1 && seen[1] == TaskOutcome::kDone, "done: called once");
  check(calls[2] == 1 && seen[2] == TaskOutcome::kFailed, "failed: called once");
  check(calls[4] == 1 && seen[4] == TaskOutcome::kExpired, "expired: called once");
  failed->fail(number(-2));
  check(!abandoned->abandon(TaskOutcome::kExpired), "an ended task is not abandoned again");
  check(calls[2] == 1 && calls[3] == 1, "never called twice");
  int late = 0;
  done->on_finish([&late] { ++late; });
  check(late == 1, "registered on an ended task: runs at once");
}

void many_producers_and_consumers() {
  BatchScheduler scheduler;
  std::vector<std::int64_t> queues;
  for (int q = 0; q < 3; ++q) queues.push_back(scheduler.add_queue(options(16, 200, 1000)));
  std::atomic<bool> stop{false};
  std::vector<std::thread> consumers;
  for (int c = 0; c < 3; ++c) {
    consumers.emplace_back([&] {
      while (auto batch = scheduler.next_batch(-1)) {
        for (auto& entry : batch->entries) {
          entry.task->complete(entry.part, number(value_of(entry.task->input()) * 1000 + entry.offset));
        }
      }
    });
  }
  std::atomic<int> wrong{0};
  std::atomic<int> done{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < 6; ++p) {
    producers.emplace_back([&, p] {
      std::mt19937 rng(p);
      for (int i = 0; i < 300; ++i) {
        const std::int64_t id = p * 100000 + i;
        auto task = std::make_shared<Task>(number(id), 1 + rng() % 16, std::nullopt);
        if (scheduler.submit(queues[rng() % queues.size()], "k", task) != SubmitStatus::kOk) {
          ++wrong;
          continue;
        }
        if (task->wait(std::nullopt) != TaskOutcome::kDone) ++wrong;
        auto outputs = task->outputs();
        if (outputs.size() != 1 || value_of(outputs[0]) != id * 1000) ++wrong;
        ++done;
      }
    });
  }
  for (auto& t : producers) t.join();
  scheduler.stop();
  for (auto& t : consumers) t.join();
  check(wrong == 0, "every producer got its own result");
  check(done == 1800, "every task done");
}

}  // namespace

int main() {
  full_batches_close_at_once_and_timeouts_close_the_rest();
  limits();
  splitting();
  deadlines_and_abandoned_tasks_never_run();
  on_finish_runs_once_when_the_task_ends();
  many_producers_and_consumers();
  return finish("all batch queue checks passed");
}
