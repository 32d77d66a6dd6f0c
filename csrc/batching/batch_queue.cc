#include "batching/batch_queue.h"

#include <algorithm>
#include <utility>

namespace fastserve {

Task::Task(Payload input, std::int64_t rows, std::optional<Clock::time_point> deadline)
    : input_(std::move(input)), rows_(rows), deadline_(deadline), outputs_(1) {}

void Task::set_parts(std::size_t parts) {
  std::lock_guard<std::mutex> lock(mutex_);
  parts_left_ = parts;
  outputs_.assign(parts, Payload());
}

TaskOutcome Task::wait(std::optional<Clock::time_point> until) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto finished = [this] { return outcome_ != TaskOutcome::kPending; };
  if (until) {
    finished_.wait_until(lock, *until, finished);
  } else {
    finished_.wait(lock, finished);
  }
  return outcome_;
}

// The waiter is notified after the lock is dropped, so that it does not wake only to block on
// the mutex (two more context switches per task). The caller holds a reference to the task, so
// the condition variable outlives the notification.
bool Task::abandon(TaskOutcome why) {
  std::function<void()> then;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (started_ || outcome_ != TaskOutcome::kPending) return false;
    outcome_ = why;
    then.swap(on_finish_);
  }
  announce(std::move(then));
  return true;
}

// Called with no lock of the task held, once it ended.
void Task::announce(std::function<void()> then) {
  finished_.notify_all();
  if (then) then();
}

void Task::on_finish(std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (outcome_ == TaskOutcome::kPending) {
      on_finish_ = std::move(callback);
      return;
    }
  }
  callback();
}

bool Task::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (outcome_ != TaskOutcome::kPending) return false;
  started_ = true;
  return true;
}

TaskOutcome Task::outcome() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return outcome_;
}

std::vector<Payload> Task::outputs() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return outputs_;
}

Payload Task::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

void Task::complete(std::size_t part, Payload output) {
  std::function<void()> then;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (outcome_ != TaskOutcome::kPending || part >= outputs_.size() || outputs_[part]) return;
    outputs_[part] = std::move(output);
    if (--parts_left_ != 0) return;
    outcome_ = TaskOutcome::kDone;
    then.swap(on_finish_);
  }
  announce(std::move(then));
}

void Task::fail(Payload error) {
  std::function<void()> then;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (outcome_ != TaskOutcome::kPending) return;
    error_ = std::move(error);
    outcome_ = TaskOutcome::kFailed;
    then.swap(on_finish_);
  }
  announce(std::move(then));
}

std::int64_t BatchScheduler::add_queue(const BatchOptions& options) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::int64_t id = next_queue_id_++;
  queues_[id].options = options;
  return id;
}

void BatchScheduler::remove_queue(std::int64_t queue_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = queues_.find(queue_id);
  if (it == queues_.end()) return;
  it->second.removed = true;
  changed_.notify_all();
}

SubmitStatus BatchScheduler::submit(std::int64_t queue_id, const std::string& key,
                                    const std::shared_ptr<Task>& task) {
  const std::int64_t rows = task->rows();
  if (rows <= 0) return SubmitStatus::kEmpty;
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = queues_.find(queue_id);
  if (found == queues_.end() || found->second.removed) return SubmitStatus::kNoQueue;
  Queue& queue = found->second;
  const BatchOptions& options = queue.options;
  if (rows > options.max_batch_size) return SubmitStatus::kTooLarge;
  const std::int64_t capacity = std::max<std::int64_t>(1, options.batch_capacity());

  auto open = queue.open.find(key);
  const std::int64_t room = open == queue.open.end() ? 0 : capacity - open->second.rows;
  // The parts this task becomes: all of it where it fits; otherwise, when splitting, what
  // fits in the open batch and then whole batches; otherwise all of it in a new batch.
  std::vector<std::int64_t> parts;
  if (rows <= room) {
    parts.push_back(rows);
  } else if (options.enable_large_batch_splitting) {
    std::int64_t left = rows;
    if (room > 0) {
      parts.push_back(room);
      left -= room;
    }
    for (; left > 0; left -= std::min(left, capacity)) parts.push_back(std::min(left, capacity));
  } else {
    parts.push_back(rows);
  }
  // Count the batches the parts would open, to refuse the task before changing anything.
  std::int64_t new_batches = 0;
  std::int64_t fill = open == queue.open.end() ? -1 : open->second.rows;  // -1: none open
  for (std::int64_t part : parts) {
    if (fill < 0 || fill + part > capacity) {
      ++new_batches;
      fill = 0;
    }
    fill += part;
    if (fill >= capacity) fill = -1;
  }
  if (new_batches > 0 && queue.batches() + new_batches > options.max_enqueued_batches) {
    return SubmitStatus::kQueueFull;
  }

  task->set_parts(parts.size());
  const Clock::time_point now = Clock::now();
  std::int64_t offset = 0;
  // Batch threads need waking only when a batch opened (a new timeout to wait for) or became
  // ready; a task joining an open batch changes neither, and waking them for it costs two
  // context switches per request.
  bool wake = false;
  for (std::size_t part = 0; part < parts.size(); ++part) {
    open = queue.open.find(key);
    if (open != queue.open.end() && open->second.rows + parts[part] > capacity) {
      // It does not fit: the open batch is done waiting.
      queue.ready.push_back(std::move(open->second));
      queue.open.erase(open);
      open = queue.open.end();
      wake = true;
    }
    if (open == queue.open.end()) {
      Batch batch;
      batch.queue_id = queue_id;
      batch.key = key;
      batch.opened = now;
      open = queue.open.emplace(key, std::move(batch)).first;
      wake = true;
    }
    Batch& batch = open->second;
    batch.entries.push_back(BatchEntry{task, part, offset, parts[part]});
    batch.rows += parts[part];
    offset += parts[part];
    if (batch.rows >= capacity) {
      queue.ready.push_back(std::move(batch));
      queue.open.erase(open);
      wake = true;
    }
  }
  if (wake) changed_.notify_all();
  return SubmitStatus::kOk;
}

std::optional<Clock::time_point> BatchScheduler::close_due(Queue& queue, Clock::time_point now) {
  std::optional<Clock::time_point> earliest;
  const auto timeout = std::chrono::microseconds(queue.options.batch_timeout_micros);
  for (auto it = queue.open.begin(); it != queue.open.end();) {
    const Clock::time_point due = it->second.opened + timeout;
    if (queue.removed || due <= now) {
      queue.ready.push_back(std::move(it->second));
      it = queue.open.erase(it);
    } else {
      if (!earliest || due < *earliest) earliest = due;
      ++it;
    }
  }
  return earliest;
}

std::optional<Batch> BatchScheduler::next_batch(double timeout_seconds) {
  std::optional<Clock::time_point> give_up;
  if (timeout_seconds >= 0) {
    give_up = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(timeout_seconds));
  }
  // Tasks ended here are released after the lock is dropped: releasing one may free its
  // payloads, whose deleter may need a runtime lock (the GIL).
  std::vector<std::shared_ptr<Task>> ended;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopped_) {
    const Clock::time_point now = Clock::now();
    std::optional<Clock::time_point> wake;
    // Take the queues in turn, starting after the one served last.
    std::vector<std::int64_t> order;
    for (auto it = queues_.lower_bound(turn_); it != queues_.end(); ++it) order.push_back(it->first);
    for (auto it = queues_.begin(); it != queues_.end() && it->first < turn_; ++it) {
      order.push_back(it->first);
    }
    for (std::int64_t id : order) {
      Queue& queue = queues_.at(id);
      if (auto due = close_due(queue, now); due && (!wake || *due < *wake)) wake = due;
      while (!queue.ready.empty()) {
        Batch batch = std::move(queue.ready.front());
        queue.ready.pop_front();
        std::vector<BatchEntry> live;
        live.reserve(batch.entries.size());
        for (BatchEntry& entry : batch.entries) {
          Task& task = *entry.task;
          // Work whose deadline passed is never started; a task that ended already
          // (abandoned by its producer, or another part failed) is dropped.
          if (task.deadline() && *task.deadline() <= now) task.abandon(TaskOutcome::kExpired);
          if (task.start()) {
            live.push_back(std::move(entry));
          } else {
            ended.push_back(std::move(entry.task));
          }
        }
        if (live.empty()) continue;
        batch.entries = std::move(live);
        batch.rows = 0;
        for (const BatchEntry& entry : batch.entries) batch.rows += entry.rows;
        turn_ = id + 1;
        if (queue.removed && queue.open.empty() && queue.ready.empty()) queues_.erase(id);
        lock.unlock();
        ended.clear();
        return batch;
      }
      if (queue.removed && queue.open.empty()) queues_.erase(id);
    }
    if (give_up && Clock::now() >= *give_up) break;
    std::optional<Clock::time_point> until = wake;
    if (give_up && (!until || *give_up < *until)) until = give_up;
    if (until) {
      changed_.wait_until(lock, *until);
    } else {
      changed_.wait(lock);
    }
  }
  lock.unlock();
  ended.clear();
  return std::nullopt;
}

void BatchScheduler::stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopped_ = true;
  changed_.notify_all();
}

std::int64_t BatchScheduler::queued_rows(std::int64_t queue_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = queues_.find(queue_id);
  if (it == queues_.end()) return 0;
  std::int64_t rows = 0;
  for (const auto& [key, batch] : it->second.open) rows += batch.rows;
  for (const Batch& batch : it->second.ready) rows += batch.rows;
  return rows;
}

std::int64_t BatchScheduler::enqueued_batches(std::int64_t queue_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = queues_.find(queue_id);
  return it == queues_.end() ? 0 : it->second.batches();
}

}  // namespace fastserve
