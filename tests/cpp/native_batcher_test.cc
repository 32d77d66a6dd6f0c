// NativeBatcher against real SavedModels (built by tests/test_cpp_native_batcher.py): batch
// assembly and splitting alone, then many threads batching through half_plus_two, padding,
// splitting, deadlines, cancellation, queue bounds, error isolation and stop. Usage:
//   native_batcher_test <libtensorflow_cc.so.2> <half_plus_two export dir> <config hex>
//                       <identities export dir (models.identities)>
#include "check.h"
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "batching/native_batcher.h"

using fastserve::Clock;
using fastserve::DataType;
using fastserve::Feeds;
using fastserve::NativeBatcher;
using fastserve::NativeBatchingOptions;
using fastserve::Tensor;
using fastserve::tensorflow::Status;
using fastserve::tensorflow::TensorFlowSession;
namespace batching = fastserve::batching;

using fastserve::testing::finish;
using fastserve::testing::from_hex;

namespace {




Tensor floats(std::vector<std::int64_t> shape, const std::vector<float>& values) {
  Tensor tensor = Tensor::allocate(DataType::kFloat, std::move(shape));
  std::memcpy(tensor.mutable_data(), values.data(), values.size() * sizeof(float));
  return tensor;
}

std::vector<float> values(const Tensor& tensor) {
  const auto* data = static_cast<const float*>(tensor.data);
  return std::vector<float>(data, data + tensor.bytes / sizeof(float));
}

NativeBatchingOptions options(std::int64_t max_batch_size, std::int64_t timeout_micros) {
  NativeBatchingOptions made;
  made.queue.max_batch_size = max_batch_size;
  made.queue.batch_timeout_micros = timeout_micros;
  made.queue.max_enqueued_batches = 100;
  made.num_batch_threads = 2;
  return made;
}

void assembly() {
  CHECK(batching::padded_size(3, {2, 4, 8}) == 4);
  CHECK(batching::padded_size(9, {2, 4, 8}) == 9);
  CHECK(batching::padded_size(3, {}) == 3);

  Tensor rows = floats({3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor middle = batching::slice_rows(rows, 1, 2);
  CHECK((middle.shape == std::vector<std::int64_t>{2, 2}));
  CHECK((values(middle) == std::vector<float>{3, 4, 5, 6}));
  CHECK(middle.owner == rows.owner);  // shares the buffer

  // [[1, 2]] padded to 3 columns with its first element; [[3], [4]] to 3 likewise.
  Tensor padded = batching::pad_to(floats({1, 2}, {1, 2}), {3});
  CHECK((values(padded) == std::vector<float>{1, 2, 1}));
  Tensor cube = batching::pad_to(floats({1, 2, 2}, {1, 2, 3, 4}), {3, 3});
  CHECK((cube.shape == std::vector<std::int64_t>{1, 3, 3}));
  CHECK((values(cube) == std::vector<float>{1, 2, 1, 3, 4, 1, 1, 1, 1}));

  // Two pieces, then two padding rows copying the last piece's first row.
  Tensor merged = batching::concatenate({floats({1, 2}, {1, 2}), floats({2, 2}, {3, 4, 5, 6})}, 2);
  CHECK((merged.shape == std::vector<std::int64_t>{5, 2}));
  CHECK((values(merged) == std::vector<float>{1, 2, 3, 4, 5, 6, 3, 4, 3, 4}));

  Tensor words = Tensor::allocate(DataType::kString, {2, 1});
  words.strings = {"a", "b"};
  Tensor more = Tensor::allocate(DataType::kString, {1, 1});
  more.strings = {"c"};
  Tensor joined = batching::concatenate({batching::slice_rows(words, 1, 1), more}, 1);
  CHECK((joined.strings == std::vector<std::string>{"b", "c", "c"}));
  Tensor wide = batching::pad_to(words, {2});
  CHECK((wide.strings == std::vector<std::string>{"a", "a", "b", "a"}));

  Feeds one{{"x:0", floats({1, 2}, {1, 2})}};
  Feeds other{{"x:0", floats({1, 3}, {1, 2, 3})}};
  CHECK(batching::shape_key(one, false) != batching::shape_key(other, false));
  CHECK(batching::shape_key(one, true) == batching::shape_key(other, true));
}

// Many threads, 1 to 3 rows each, every answer checked; batches of several tasks formed.
void many_threads(const std::shared_ptr<TensorFlowSession>& session) {
  NativeBatchingOptions made = options(8, 2000);
  made.allowed_batch_sizes = {2, 4, 8};
  NativeBatcher batcher(session, made);
  batcher.set_recording(true);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&batcher, &bad, t] {
      for (int i = 0; i < 40; ++i) {
        const int rows = 1 + (t + i) % 3;
        std::vector<float> x;
        for (int r = 0; r < rows; ++r) x.push_back(static_cast<float>(t * 1000 + i * 10 + r));
        std::vector<Tensor> outputs;
        Status status =
            batcher.run({{"x:0", floats({rows, 1}, x)}}, {"doubled:0", "y:0"}, &outputs);
        if (!status.ok() || outputs.size() != 2 || outputs[1].shape[0] != rows) {
          bad.fetch_add(1);
          continue;
        }
        for (int r = 0; r < rows; ++r) {
          if (values(outputs[1])[r] != 0.5f * x[r] + 2 || values(outputs[0])[r] != 2 * x[r]) {
            bad.fetch_add(1);
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(bad.load() == 0);
  fastserve::BatchingRecords records = batcher.drain();
  CHECK(records.task_rows.size() == 8 * 40);
  std::int64_t rows = 0;
  std::size_t tasks = 0;
  bool several = false;
  for (const auto& batch : records.batches) {
    rows += batch.rows;
    tasks += batch.queuing_micros.size();
    several = several || batch.queuing_micros.size() > 1;
    CHECK(batch.padded == 2 || batch.padded == 4 || batch.padded == 8);
    CHECK(batch.padded >= batch.rows);
  }
  CHECK(tasks == 8 * 40);
  CHECK(several);
  CHECK(batcher.drain().batches.empty());
}

void refusals(const std::shared_ptr<TensorFlowSession>& session) {
  NativeBatchingOptions made = options(2, 1000000);
  made.queue.max_enqueued_batches = 1;
  NativeBatcher batcher(session, made);
  std::vector<Tensor> outputs;
  Status large = batcher.run({{"x:0", floats({3, 1}, {1, 2, 3})}}, {"y:0"}, &outputs);
  CHECK(large.code == 3);
  CHECK(large.message == "Task size 3 is larger than maximum input batch size 2");

  // One row waits in the only batch (its timeout is a second) until its deadline passes;
  // meanwhile two rows need a second batch: the queue is full.
  Status expired;
  std::thread waiter([&] {
    std::vector<Tensor> mine;
    expired = batcher.run({{"x:0", floats({1, 1}, {1})}}, {"y:0"}, &mine,
                          Clock::now() + std::chrono::milliseconds(300));
  });
  while (batcher.queued_rows() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  Status full = batcher.run({{"x:0", floats({2, 1}, {1, 2})}}, {"y:0"}, &outputs);
  CHECK(full.code == 14);
  CHECK(full.message ==
        "The batch scheduling queue to which this task was submitted is full; currently 1 "
        "batches enqueued and max_enqueued_batches is 1");
  waiter.join();
  CHECK(expired.code == 4);
  CHECK(expired.message == "Run() timeout exceeded while waiting in batching queue");

  // Cancelled while queued (in a batch of its own, that waits a second).
  NativeBatcher waiting(session, options(2, 1000000));
  std::mutex mutex;
  std::function<void()> abandon;
  Status cancelled;
  std::thread cancelling([&] {
    std::vector<Tensor> mine;
    cancelled = waiting.run({{"x:0", floats({1, 1}, {1})}}, {"y:0"}, &mine, std::nullopt,
                            [&](std::function<void()> callback) {
                              std::lock_guard<std::mutex> lock(mutex);
                              abandon = std::move(callback);
                            });
  });
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (abandon) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    abandon();
  }
  cancelling.join();
  if (cancelled.code != 1) std::fprintf(stderr, "cancelled: %d %s\n", cancelled.code, cancelled.message.c_str());
  CHECK(cancelled.code == 1);
  CHECK(cancelled.message == "The request was cancelled while it was queued");

  Status unequal = batcher.run({{"x:0", floats({1, 1}, {1})}, {"x2:0", floats({2, 1}, {1, 2})}},
                               {"y:0"}, &outputs);
  CHECK(unequal.code == 3);
  CHECK(unequal.message == "Batching Run() input tensors must have equal 0th-dimension size");

  // A scalar input runs alone, unbatched (the session decides).
  Tensor scalar = Tensor::allocate(DataType::kFloat, {});
  CHECK(batcher.run({{"x:0", scalar}}, {"y:0"}, &outputs).code != 14);

  batcher.stop();
  Status stopped = batcher.run({{"x:0", floats({1, 1}, {1})}}, {"y:0"}, &outputs);
  CHECK(stopped.code == 14);
  CHECK(stopped.message == "The model version is being unloaded");
}

// A failing batch fails its own tasks only; the batcher serves the next ones.
void errors(const std::shared_ptr<TensorFlowSession>& session) {
  NativeBatcher batcher(session, options(4, 0));
  std::vector<Tensor> outputs;
  Status missing = batcher.run({{"x:0", floats({1, 1}, {1})}}, {"nonexistent:0"}, &outputs);
  CHECK(missing.code == 5);
  // x fed with 2 columns: y is [2, 2], fine; a fetch of a tensor of another batch size fails.
  Status unbatched = batcher.run({{"x:0", floats({1, 1}, {1})}}, {"a/Read/ReadVariableOp:0"},
                                 &outputs);
  CHECK(unbatched.code == 9);
  CHECK(unbatched.message == "Batched output tensor has 0 dimensions");
  Status fine = batcher.run({{"x:0", floats({2, 1}, {2, 4})}}, {"y:0"}, &outputs);
  CHECK(fine.ok());
  CHECK((values(outputs[0]) == std::vector<float>{3, 4}));
}

void splitting(const std::shared_ptr<TensorFlowSession>& session) {
  NativeBatchingOptions made = options(8, 0);
  made.queue.enable_large_batch_splitting = true;
  made.queue.max_execution_batch_size = 2;
  NativeBatcher batcher(session, made);
  batcher.set_recording(true);
  std::vector<Tensor> outputs;
  Status status = batcher.run({{"x:0", floats({5, 1}, {0, 2, 4, 6, 8})}}, {"y:0", "doubled:0"},
                              &outputs);
  CHECK(status.ok());
  CHECK((values(outputs[0]) == std::vector<float>{2, 3, 4, 5, 6}));
  CHECK((values(outputs[1]) == std::vector<float>{0, 4, 8, 12, 16}));
  for (const auto& batch : batcher.drain().batches) CHECK(batch.rows <= 2);
}

// Two tasks of different lengths share one batch (it runs when full), padded to the widest.
void variable_lengths(const std::shared_ptr<TensorFlowSession>& identities) {
  NativeBatchingOptions made = options(2, 5000000);
  made.pad_variable_length_inputs = true;
  NativeBatcher batcher(identities, made);
  std::vector<Tensor> first_out;
  std::vector<Tensor> second_out;
  Status first;
  std::thread other([&] {
    first = batcher.run({{"in_float32:0", floats({1, 2}, {7, 8})}}, {"out_float32:0"}, &first_out);
  });
  Status second =
      batcher.run({{"in_float32:0", floats({1, 3}, {1, 2, 3})}}, {"out_float32:0"}, &second_out);
  other.join();
  CHECK(first.ok() && second.ok());
  if (first.ok() && second.ok()) {
    CHECK((first_out[0].shape == std::vector<std::int64_t>{1, 3}));
    CHECK((values(first_out[0]) == std::vector<float>{7, 8, 7}));
    CHECK((values(second_out[0]) == std::vector<float>{1, 2, 3}));
  }

  // Strings through the same path.
  NativeBatcher strings(identities, options(2, 5000000));
  Tensor a = Tensor::allocate(DataType::kString, {1});
  a.strings = {"left"};
  Tensor b = Tensor::allocate(DataType::kString, {1});
  b.strings = {"right"};
  std::vector<Tensor> a_out;
  std::vector<Tensor> b_out;
  Status a_status;
  std::thread left([&] { a_status = strings.run({{"in_string:0", a}}, {"out_string:0"}, &a_out); });
  Status b_status = strings.run({{"in_string:0", b}}, {"out_string:0"}, &b_out);
  left.join();
  CHECK(a_status.ok() && b_status.ok());
  if (a_status.ok() && b_status.ok()) {
    CHECK((a_out[0].strings == std::vector<std::string>{"left"}));
    CHECK((b_out[0].strings == std::vector<std::string>{"right"}));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s library export_dir config_hex identities\n", argv[0]);
    return 2;
  }
  std::string error;
  const auto* api = fastserve::tensorflow::load_tensorflow_api(argv[1], &error);
  if (api == nullptr) {
    std::fprintf(stderr, "cannot load the C API: %s\n", error.c_str());
    return 1;
  }
  const std::string config = from_hex(argv[3]);
  auto session = std::make_shared<TensorFlowSession>(api);
  auto identities = std::make_shared<TensorFlowSession>(api);
  for (auto [loaded, dir] : {std::pair{session.get(), argv[2]}, std::pair{identities.get(), argv[4]}}) {
    Status status = loaded->load(dir, {"serve"}, config);
    if (!status.ok()) {
      std::fprintf(stderr, "load of %s failed: %s\n", dir, status.message.c_str());
      return 1;
    }
  }
  assembly();
  many_threads(session);
  refusals(session);
  errors(session);
  splitting(session);
  variable_lengths(identities);
  return finish("all native batcher checks passed");
}
