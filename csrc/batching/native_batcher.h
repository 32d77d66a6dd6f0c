// Batching without Python: one version's requests queued on its own BatchScheduler, batches
// formed, inputs concatenated (and padded) in C++, the TensorFlow session run once per batch
// and each output split back to its tasks (TF Serving's batching_session, for the C API runner).
//
// Threads and the GIL: nothing here touches Python. run() may be called from any number of
// threads at once and blocks its caller until the request's rows are done; callers must not
// hold the GIL (the Python binding releases it). The batcher owns num_batch_threads C++ batch
// threads that take ready batches and run them; they never take the GIL, and nothing they
// release may need it (run() hands them only tensors whose owners are C++ memory or protobuf
// messages: the Python binding copies numpy inputs). stop() (and the destructor) drains the
// queues and joins the batch threads; call it when no run() is in progress (the version's
// handles are all released), from any thread but a batch thread, without the GIL (the binding
// releases it, also when Python drops the last reference). set_recording() is lock-free;
// drain() and queued_rows() take the batcher's mutex briefly (callers release the GIL).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "batching/batch_queue.h"
#include "runners/tensorflow_session.h"
#include "tensor/tensor.h"

namespace fastserve {

// A version's batching parameters (TF Serving's BatchingParameters).
struct NativeBatchingOptions {
  BatchOptions queue;  // per queue (one queue per set of fed tensors: per signature)
  std::int64_t num_batch_threads = 1;
  std::vector<std::int64_t> allowed_batch_sizes;  // ascending; empty: no padding
  bool pad_variable_length_inputs = false;
};

// What the batcher did, for metrics (TF Serving's batching_session meanings). Recorded only
// while recording is on; read and cleared by drain() at scrape time.
struct BatchRecord {
  std::int64_t rows = 0;    // the tasks' rows
  std::int64_t padded = 0;  // rows after padding to an allowed batch size
  std::vector<double> queuing_micros;  // each task's time in the queue
};
struct BatchingRecords {
  std::vector<std::int64_t> task_rows;  // each queued task's rows (input_batch_size)
  std::vector<BatchRecord> batches;
  std::int64_t dropped = 0;  // records not kept because nobody drained them
};

using Feeds = std::vector<std::pair<std::string, Tensor>>;

// Plain functions of batch assembly and splitting, used by the batcher and tested alone.
namespace batching {

// The smallest allowed size holding `rows` (rows itself without a list, or above its largest).
std::int64_t padded_size(std::int64_t rows, const std::vector<std::int64_t>& allowed);

// Rows [offset, offset + rows) of `tensor` (rank >= 1). Fixed-size types share the buffer.
Tensor slice_rows(const Tensor& tensor, std::int64_t offset, std::int64_t rows);

// `tensor` grown at the end of each non-batch dimension to `dims`, filled with its own first
// element (TF Serving's pad_variable_length_inputs); itself when already that shape.
Tensor pad_to(const Tensor& tensor, const std::vector<std::int64_t>& dims);

// The pieces stacked along dimension 0 (same dtype and non-batch dims), then `padding` copies
// of the last piece's first row. A single unpadded piece is returned as it is.
Tensor concatenate(const std::vector<Tensor>& pieces, std::int64_t padding);

// The key tasks must share to be batched together: fed names, dtypes and non-batch dims
// (only ranks when variable lengths are padded).
std::string shape_key(const Feeds& feeds, bool pad_variable_length_inputs);

}  // namespace batching

class NativeBatcher {
 public:
  NativeBatcher(std::shared_ptr<tensorflow::TensorFlowSession> session,
                NativeBatchingOptions options);
  ~NativeBatcher();
  NativeBatcher(const NativeBatcher&) = delete;
  NativeBatcher& operator=(const NativeBatcher&) = delete;

  // Registers the callback that abandons a queued request when its caller is cancelled. The
  // callback may be run on any thread, at most once, even after run() returned.
  using OnCancel = std::function<void(std::function<void()>)>;

  // Runs `feeds` (tensor names, values of equal 0th dimension) fetching `fetches` as part of a
  // batch; blocks until done. On success `*outputs` holds one tensor per fetch. Failures:
  // INVALID_ARGUMENT (unequal 0th dimensions, too many rows), UNAVAILABLE (queue full, stopped),
  // DEADLINE_EXCEEDED (the deadline passed while queued), CANCELLED (cancelled while queued),
  // FAILED_PRECONDITION (an output not batched along dimension 0), or the session's error.
  // Requests without rows or with a scalar input run alone, unbatched.
  tensorflow::Status run(const Feeds& feeds, const std::vector<std::string>& fetches,
                         std::vector<Tensor>* outputs,
                         std::optional<Clock::time_point> deadline = std::nullopt,
                         const OnCancel& on_cancel = nullptr);

  // Drains the queues, stops and joins the batch threads; later runs fail UNAVAILABLE.
  void stop();

  // Metrics: off by default.
  void set_recording(bool on) { recording_.store(on); }
  BatchingRecords drain();
  std::int64_t queued_rows() const;

  const NativeBatchingOptions& options() const { return options_; }

 private:
  std::int64_t queue_for(const Feeds& feeds);
  void serve();
  void run_batch(Batch& batch);
  void record_task(std::int64_t rows);
  void record_batch(BatchRecord record);

  const std::shared_ptr<tensorflow::TensorFlowSession> session_;
  const NativeBatchingOptions options_;
  BatchScheduler scheduler_;
  mutable std::mutex mutex_;  // queues_, stopped_, records_
  std::map<std::string, std::int64_t> queues_;  // by the fed tensors' names
  bool stopped_ = false;
  std::atomic<bool> recording_{false};
  BatchingRecords records_;
  std::vector<std::thread> threads_;
};

}  // namespace fastserve
