#include "batching/native_batcher.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <set>

namespace fastserve {
namespace {

constexpr int kCancelled = 1;
constexpr int kInvalidArgument = 3;
constexpr int kDeadlineExceeded = 4;
constexpr int kFailedPrecondition = 9;
constexpr int kInternal = 13;
constexpr int kUnavailable = 14;
// Records kept for metrics between two scrapes; past it they are counted as dropped.
constexpr std::size_t kMaxRecords = 1 << 16;

// What a task carries into the queue: the request's feeds (sorted by name) and fetches.
struct Request {
  Feeds feeds;
  std::vector<std::string> fetches;
  Clock::time_point queued_at;
};

std::int64_t row_elements(const Tensor& tensor) {
  std::int64_t count = 1;
  for (std::size_t i = 1; i < tensor.shape.size(); ++i) count *= tensor.shape[i];
  return count;
}

}  // namespace

namespace batching {

std::int64_t padded_size(std::int64_t rows, const std::vector<std::int64_t>& allowed) {
  for (std::int64_t size : allowed) {
    if (size >= rows) return size;
  }
  return rows;
}

Tensor slice_rows(const Tensor& tensor, std::int64_t offset, std::int64_t rows) {
  if (offset == 0 && !tensor.shape.empty() && rows == tensor.shape[0]) return tensor;
  Tensor slice;
  slice.dtype = tensor.dtype;
  slice.shape = tensor.shape;
  slice.shape[0] = rows;
  const std::int64_t per_row = row_elements(tensor);
  if (tensor.dtype == DataType::kString) {
    auto first = tensor.strings.begin() + offset * per_row;
    slice.strings.assign(first, first + rows * per_row);
    return slice;
  }
  const std::size_t row_bytes = static_cast<std::size_t>(per_row) * element_size(tensor.dtype);
  slice.owner = tensor.owner;
  slice.data = static_cast<const char*>(tensor.data) + static_cast<std::size_t>(offset) * row_bytes;
  slice.bytes = static_cast<std::size_t>(rows) * row_bytes;
  return slice;
}

Tensor pad_to(const Tensor& tensor, const std::vector<std::int64_t>& dims) {
  if (std::equal(tensor.shape.begin() + 1, tensor.shape.end(), dims.begin(), dims.end())) {
    return tensor;
  }
  std::vector<std::int64_t> shape{tensor.shape[0]};
  shape.insert(shape.end(), dims.begin(), dims.end());
  Tensor padded = Tensor::allocate(tensor.dtype, shape);
  const bool strings = tensor.dtype == DataType::kString;
  const std::size_t size = element_size(tensor.dtype);
  const std::int64_t count = tensor.num_elements();
  const std::int64_t total = padded.num_elements();
  // Filled with the tensor's first element (zeros for an empty tensor), then the tensor's own
  // elements copied in, one innermost run at a time.
  if (count > 0) {
    for (std::int64_t i = 0; i < total; ++i) {
      if (strings) {
        padded.strings[static_cast<std::size_t>(i)] = tensor.strings[0];
      } else {
        std::memcpy(static_cast<char*>(padded.mutable_data()) + i * size, tensor.data, size);
      }
    }
  }
  const std::size_t rank = tensor.shape.size();
  const std::int64_t inner = tensor.shape[rank - 1];
  if (count == 0 || inner == 0) return padded;
  std::vector<std::int64_t> coords(rank, 0);
  for (std::int64_t run = 0; run < count / inner; ++run) {
    // coords[0..rank-2] of this run, then its offset in the padded tensor.
    std::int64_t rest = run;
    for (std::size_t d = rank - 1; d-- > 0;) {
      coords[d] = rest % tensor.shape[d];
      rest /= tensor.shape[d];
    }
    std::int64_t target = 0;
    for (std::size_t d = 0; d + 1 < rank; ++d) target = target * shape[d] + coords[d];
    target *= shape[rank - 1];
    const std::int64_t source = run * inner;
    if (strings) {
      std::copy_n(tensor.strings.begin() + source, inner, padded.strings.begin() + target);
    } else {
      std::memcpy(static_cast<char*>(padded.mutable_data()) + target * size,
                  static_cast<const char*>(tensor.data) + source * size, inner * size);
    }
  }
  return padded;
}

Tensor concatenate(const std::vector<Tensor>& pieces, std::int64_t padding) {
  if (pieces.size() == 1 && padding == 0) return pieces[0];
  const Tensor& last = pieces.back();
  std::vector<std::int64_t> shape = last.shape;
  shape[0] = padding;
  for (const Tensor& piece : pieces) shape[0] += piece.shape[0];
  Tensor merged = Tensor::allocate(last.dtype, shape);
  const std::int64_t per_row = row_elements(last);
  if (last.dtype == DataType::kString) {
    auto out = merged.strings.begin();
    for (const Tensor& piece : pieces) out = std::copy(piece.strings.begin(), piece.strings.end(), out);
    for (std::int64_t i = 0; i < padding; ++i) out = std::copy_n(last.strings.begin(), per_row, out);
    return merged;
  }
  const std::size_t row_bytes = static_cast<std::size_t>(per_row) * element_size(last.dtype);
  char* out = static_cast<char*>(merged.mutable_data());
  for (const Tensor& piece : pieces) {
    if (piece.bytes > 0) std::memcpy(out, piece.data, piece.bytes);
    out += piece.bytes;
  }
  for (std::int64_t i = 0; i < padding && row_bytes > 0; ++i, out += row_bytes) {
    std::memcpy(out, last.data, row_bytes);
  }
  return merged;
}

std::string shape_key(const Feeds& feeds, bool pad_variable_length_inputs) {
  std::string key;
  for (const auto& [name, tensor] : feeds) {
    key += name;
    key += ':';
    key += std::to_string(static_cast<int>(tensor.dtype));
    key += ':';
    if (pad_variable_length_inputs) {
      key += std::to_string(tensor.shape.size() - 1);
    } else {
      for (std::size_t i = 1; i < tensor.shape.size(); ++i) {
        key += std::to_string(tensor.shape[i]);
        key += ',';
      }
    }
    key += '|';
  }
  return key;
}

}  // namespace batching

NativeBatcher::NativeBatcher(std::shared_ptr<tensorflow::TensorFlowSession> session,
                             NativeBatchingOptions options)
    : session_(std::move(session)), options_(std::move(options)) {
  const std::int64_t threads = std::max<std::int64_t>(1, options_.num_batch_threads);
  for (std::int64_t i = 0; i < threads; ++i) threads_.emplace_back([this] { serve(); });
}

NativeBatcher::~NativeBatcher() { stop(); }

void NativeBatcher::stop() {
  std::vector<std::int64_t> queues;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    for (const auto& [names, id] : queues_) queues.push_back(id);
  }
  // Queued batches still run (a removed queue's batches are ready at once); then the threads go.
  for (std::int64_t id : queues) scheduler_.remove_queue(id);
  for (;;) {
    std::int64_t left = 0;
    for (std::int64_t id : queues) left += scheduler_.enqueued_batches(id);
    if (left == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  scheduler_.stop();
  for (std::thread& thread : threads_) thread.join();
}

std::int64_t NativeBatcher::queue_for(const Feeds& feeds) {
  std::string names;
  for (const auto& feed : feeds) names += feed.first + '\n';
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopped_) return -1;
  auto found = queues_.find(names);
  if (found != queues_.end()) return found->second;
  const std::int64_t id = scheduler_.add_queue(options_.queue);
  queues_.emplace(std::move(names), id);
  return id;
}

std::int64_t NativeBatcher::queued_rows() const {
  std::vector<std::int64_t> queues;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [names, id] : queues_) queues.push_back(id);
  }
  std::int64_t rows = 0;
  for (std::int64_t id : queues) rows += scheduler_.queued_rows(id);
  return rows;
}

void NativeBatcher::record_task(std::int64_t rows) {
  if (!recording_.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (records_.task_rows.size() >= kMaxRecords) {
    ++records_.dropped;
  } else {
    records_.task_rows.push_back(rows);
  }
}

void NativeBatcher::record_batch(BatchRecord record) {
  if (!recording_.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (records_.batches.size() >= kMaxRecords) {
    ++records_.dropped;
  } else {
    records_.batches.push_back(std::move(record));
  }
}

BatchingRecords NativeBatcher::drain() {
  BatchingRecords drained;
  std::lock_guard<std::mutex> lock(mutex_);
  std::swap(drained, records_);
  return drained;
}

tensorflow::Status NativeBatcher::run(const Feeds& feeds, const std::vector<std::string>& fetches,
                                      std::vector<Tensor>* outputs,
                                      std::optional<Clock::time_point> deadline,
                                      const OnCancel& on_cancel) {
  bool batchable = !feeds.empty();
  for (const auto& feed : feeds) batchable = batchable && !feed.second.shape.empty();
  if (!batchable) return session_->run(feeds, fetches, outputs);
  const std::int64_t rows = feeds[0].second.shape[0];
  for (const auto& feed : feeds) {
    if (feed.second.shape[0] != rows) {
      return {kInvalidArgument, "Batching Run() input tensors must have equal 0th-dimension size"};
    }
  }
  if (rows == 0) return session_->run(feeds, fetches, outputs);

  auto request = std::make_shared<Request>();
  request->feeds = feeds;
  std::sort(request->feeds.begin(), request->feeds.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  request->fetches = fetches;
  request->queued_at = Clock::now();
  const std::string key = batching::shape_key(request->feeds, options_.pad_variable_length_inputs);
  const std::int64_t queue = queue_for(request->feeds);
  if (queue < 0) return {kUnavailable, "The model version is being unloaded"};
  auto task = std::make_shared<Task>(request, rows, deadline);
  switch (scheduler_.submit(queue, key, task)) {
    case SubmitStatus::kOk:
      break;
    case SubmitStatus::kTooLarge:
      return {kInvalidArgument, "Task size " + std::to_string(rows) +
                                    " is larger than maximum input batch size " +
                                    std::to_string(options_.queue.max_batch_size)};
    case SubmitStatus::kQueueFull:
      return {kUnavailable,
              "The batch scheduling queue to which this task was submitted is full; currently " +
                  std::to_string(scheduler_.enqueued_batches(queue)) +
                  " batches enqueued and max_enqueued_batches is " +
                  std::to_string(options_.queue.max_enqueued_batches)};
    case SubmitStatus::kNoQueue:
      return {kUnavailable, "The model version is being unloaded"};
    case SubmitStatus::kEmpty:
      return {kInvalidArgument, "Batching Run() input tensors must have at least one row"};
  }
  record_task(rows);
  if (on_cancel) {
    // A weak reference: a call that outlives this run does not keep the request's tensors.
    on_cancel([weak = std::weak_ptr<Task>(task)] {
      if (auto found = weak.lock()) found->abandon(TaskOutcome::kCancelled);
    });
  }
  TaskOutcome outcome = task->wait(deadline);
  if (outcome == TaskOutcome::kPending) {
    // The deadline passed: work not started yet is never started.
    outcome = task->abandon(TaskOutcome::kExpired) ? TaskOutcome::kExpired : task->wait(std::nullopt);
  }
  switch (outcome) {
    case TaskOutcome::kDone:
      break;
    case TaskOutcome::kFailed: {
      Payload error = task->error();
      if (!error) return {kInternal, "a batch failed without a status"};
      return *static_cast<const tensorflow::Status*>(error.get());
    }
    case TaskOutcome::kCancelled:
      return {kCancelled, "The request was cancelled while it was queued"};
    default:
      return {kDeadlineExceeded, "Run() timeout exceeded while waiting in batching queue"};
  }
  std::vector<Payload> parts = task->outputs();
  if (parts.size() == 1) {
    *outputs = *static_cast<const std::vector<Tensor>*>(parts[0].get());
    return {};
  }
  std::vector<Tensor> joined;
  joined.reserve(fetches.size());
  for (std::size_t i = 0; i < fetches.size(); ++i) {
    std::vector<Tensor> pieces;
    pieces.reserve(parts.size());
    for (const Payload& part : parts) {
      pieces.push_back((*static_cast<const std::vector<Tensor>*>(part.get()))[i]);
    }
    joined.push_back(batching::concatenate(pieces, 0));
  }
  *outputs = std::move(joined);
  return {};
}

void NativeBatcher::serve() {
  for (;;) {
    std::optional<Batch> batch = scheduler_.next_batch(-1);
    if (!batch) return;
    run_batch(*batch);
  }
}

void NativeBatcher::run_batch(Batch& batch) {
  auto fail_all = [&batch](tensorflow::Status status) {
    auto error = std::make_shared<tensorflow::Status>(std::move(status));
    for (BatchEntry& entry : batch.entries) entry.task->fail(error);
  };
  try {
    std::vector<const Request*> requests;
    requests.reserve(batch.entries.size());
    for (const BatchEntry& entry : batch.entries) {
      requests.push_back(static_cast<const Request*>(entry.task->input().get()));
    }
    const std::int64_t rows = batch.rows;
    const std::int64_t padded = batching::padded_size(rows, options_.allowed_batch_sizes);
    const Clock::time_point now = Clock::now();
    if (recording_.load(std::memory_order_relaxed)) {
      BatchRecord record{rows, padded, {}};
      for (const Request* request : requests) {
        record.queuing_micros.push_back(
            std::chrono::duration<double, std::micro>(now - request->queued_at).count());
      }
      record_batch(std::move(record));
    }

    // Every task of a batch feeds the same names (one queue per set of names), sorted.
    Feeds merged;
    const Feeds& first = requests[0]->feeds;
    merged.reserve(first.size());
    for (std::size_t i = 0; i < first.size(); ++i) {
      std::vector<Tensor> pieces;
      pieces.reserve(requests.size());
      for (std::size_t t = 0; t < requests.size(); ++t) {
        const BatchEntry& entry = batch.entries[t];
        pieces.push_back(
            batching::slice_rows(requests[t]->feeds[i].second, entry.offset, entry.rows));
      }
      if (options_.pad_variable_length_inputs) {
        std::vector<std::int64_t> widest(pieces[0].shape.begin() + 1, pieces[0].shape.end());
        for (const Tensor& piece : pieces) {
          for (std::size_t d = 0; d < widest.size(); ++d) {
            widest[d] = std::max(widest[d], piece.shape[d + 1]);
          }
        }
        for (Tensor& piece : pieces) piece = batching::pad_to(piece, widest);
      }
      merged.emplace_back(first[i].first, batching::concatenate(pieces, padded - rows));
    }
    std::set<std::string> wanted;
    for (const Request* request : requests) wanted.insert(request->fetches.begin(), request->fetches.end());
    const std::vector<std::string> fetches(wanted.begin(), wanted.end());

    std::vector<Tensor> results;
    tensorflow::Status status = session_->run(merged, fetches, &results);
    merged.clear();
    if (!status.ok()) return fail_all(std::move(status));
    if (results.size() != fetches.size()) return fail_all({kInternal, "Predict internal error"});
    for (const Tensor& result : results) {
      if (result.shape.empty()) {
        return fail_all({kFailedPrecondition, "Batched output tensor has 0 dimensions"});
      }
      if (result.shape[0] != padded) {
        return fail_all({kFailedPrecondition,
                         "Batched output tensor's 0th dimension does not equal the sum of the "
                         "0th dimension sizes of the input tensors"});
      }
    }
    std::int64_t start = 0;
    for (std::size_t t = 0; t < requests.size(); ++t) {
      const BatchEntry& entry = batch.entries[t];
      auto own = std::make_shared<std::vector<Tensor>>();
      own->reserve(requests[t]->fetches.size());
      for (const std::string& fetch : requests[t]->fetches) {
        const std::size_t index =
            std::lower_bound(fetches.begin(), fetches.end(), fetch) - fetches.begin();
        own->push_back(batching::slice_rows(results[index], start, entry.rows));
      }
      entry.task->complete(entry.part, std::move(own));
      start += entry.rows;
    }
  } catch (const std::exception& error) {
    fail_all({kInternal, error.what()});
  }
}

}  // namespace fastserve
