// TensorFlowSession against a real SavedModel (TF Serving's half_plus_two, built by
// tests/test_cpp_tensorflow.py), from many threads at once. Usage:
//   tensorflow_session_test <libtensorflow_cc.so.2> <half_plus_two export dir> <config hex>
//                           <tf.Example hex> <identities export dir (models.identities)>
#include "check.h"
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "runners/tensorflow_session.h"

using fastserve::DataType;
using fastserve::Tensor;
using fastserve::tensorflow::Status;
using fastserve::tensorflow::TensorFlowSession;

using fastserve::testing::finish;
using fastserve::testing::from_hex;

namespace {




Tensor floats(const std::vector<float>& values) {
  Tensor tensor = Tensor::allocate(DataType::kFloat, {static_cast<std::int64_t>(values.size()), 1});
  std::memcpy(tensor.mutable_data(), values.data(), values.size() * sizeof(float));
  return tensor;
}

// The same values at an address 4 bytes past a 64-byte boundary: TensorFlow must copy them.
Tensor unaligned_floats(const std::vector<float>& values) {
  Tensor backing = Tensor::allocate(DataType::kFloat,
                                    {static_cast<std::int64_t>(values.size()) + 1});
  Tensor tensor;
  tensor.dtype = DataType::kFloat;
  tensor.shape = {static_cast<std::int64_t>(values.size()), 1};
  tensor.owner = backing.owner;
  tensor.data = static_cast<const char*>(backing.data) + sizeof(float);
  tensor.bytes = values.size() * sizeof(float);
  std::memcpy(const_cast<void*>(tensor.data), values.data(), tensor.bytes);
  return tensor;
}

const float* as_floats(const Tensor& tensor) { return static_cast<const float*>(tensor.data); }

void run_many(const TensorFlowSession& session, int thread, std::atomic<int>* bad) {
  for (int i = 0; i < 100; ++i) {
    const float x = static_cast<float>(thread * 1000 + i);
    Tensor input = (i % 2 == 0) ? floats({x, x + 1}) : unaligned_floats({x, x + 1});
    std::vector<Tensor> outputs;
    Status status = session.run({{"x:0", input}}, {"y:0", "doubled:0"}, &outputs);
    if (!status.ok() || outputs.size() != 2 || outputs[0].shape != std::vector<std::int64_t>{2, 1} ||
        as_floats(outputs[0])[0] != 0.5f * x + 2 || as_floats(outputs[0])[1] != 0.5f * (x + 1) + 2 ||
        as_floats(outputs[1])[1] != 2 * (x + 1)) {
      bad->fetch_add(1);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s library export_dir config_hex example_hex identities\n",
                 argv[0]);
    return 2;
  }
  std::string error;
  CHECK(fastserve::tensorflow::load_tensorflow_api("/nonexistent/libtensorflow_cc.so.2", &error) ==
        nullptr);
  CHECK(error.find("/nonexistent/libtensorflow_cc.so.2") != std::string::npos);
  error.clear();
  const auto* api = fastserve::tensorflow::load_tensorflow_api(argv[1], &error);
  if (api == nullptr) {
    std::fprintf(stderr, "cannot load the C API: %s\n", error.c_str());
    return 1;
  }
  const std::string config = from_hex(argv[3]);

  {  // A tag set the SavedModel does not have.
    TensorFlowSession missing(api);
    Status status = missing.load(argv[2], {"gpu"}, config);
    CHECK(!status.ok());
    std::vector<Tensor> outputs;
    CHECK(missing.run({}, {"y:0"}, &outputs).code == fastserve::tensorflow::kFailedPrecondition);
  }

  TensorFlowSession session(api);
  Status loaded = session.load(argv[2], {"serve"}, config);
  if (!loaded.ok()) {
    std::fprintf(stderr, "load failed: %d %s\n", loaded.code, loaded.message.c_str());
    return 1;
  }

  // Many threads at once, aligned (zero-copy) and unaligned (copied) inputs.
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(run_many, std::cref(session), t, &bad);
  for (std::thread& thread : threads) thread.join();
  CHECK(bad.load() == 0);

  {  // A zero-copy input's owner is released once TensorFlow is done with it.
    auto released = std::make_shared<std::atomic<bool>>(false);
    Tensor input = floats({1, 2});
    std::shared_ptr<const void> buffer = input.owner;
    input.owner = std::shared_ptr<const void>(input.data, [buffer, released](const void*) {
      released->store(true);
    });
    buffer.reset();
    std::vector<Tensor> outputs;
    CHECK(session.run({{"x:0", input}}, {"y:0"}, &outputs).ok());
    input = Tensor();
    outputs.clear();
    CHECK(released->load());
  }

  {  // Strings in: a serialized tf.Example parsed by the graph.
    Tensor examples = Tensor::allocate(DataType::kString, {1});
    examples.strings[0] = from_hex(argv[4]);
    std::vector<Tensor> outputs;
    Status status = session.run({{"tf_example:0", examples}}, {"y:0"}, &outputs);
    CHECK(status.ok());
    CHECK(outputs.size() == 1 && outputs[0].num_elements() == 1 && as_floats(outputs[0])[0] == 3.5f);
  }

  {  // Strings out, copied, from a session of its own running at the same time.
    TensorFlowSession identities(api);
    CHECK(identities.load(argv[5], {"serve"}, config).ok());
    auto round_trip = [&identities](int thread, std::atomic<int>* bad) {
      for (int i = 0; i < 50; ++i) {
        Tensor strings = Tensor::allocate(DataType::kString, {3});
        strings.strings[0] = std::to_string(thread * 1000 + i);
        strings.strings[1] = std::string(100, 'x');  // past TF_TString's inline storage
        strings.strings[2] = std::string("\0\xff", 2);
        std::vector<Tensor> outputs;
        Status status = identities.run({{"in_string:0", strings}}, {"out_string:0"}, &outputs);
        if (!status.ok() || outputs.size() != 1 || outputs[0].dtype != DataType::kString ||
            outputs[0].shape != strings.shape || outputs[0].strings != strings.strings) {
          bad->fetch_add(1);
        }
      }
    };
    std::atomic<int> bad_strings{0};
    std::vector<std::thread> runners;
    for (int t = 0; t < 3; ++t) runners.emplace_back(round_trip, t, &bad_strings);
    for (std::thread& runner : runners) runner.join();
    CHECK(bad_strings.load() == 0);
    std::vector<Tensor> outputs;
    Tensor examples = Tensor::allocate(DataType::kString, {1});
    Status status = session.run({{"tf_example:0", examples}}, {"tf_example:0"}, &outputs);
    CHECK(status.code == fastserve::tensorflow::kInvalidArgument);
    CHECK(status.message == "tf_example:0 is both fed and fetched.");
  }

  {  // Errors: TensorFlow's codes and messages, or TF Session::Run's words for unknown names.
    std::vector<Tensor> outputs;
    Status status = session.run({{"nope:0", floats({1})}}, {"y:0"}, &outputs);
    CHECK(status.code == fastserve::tensorflow::kNotFound);
    CHECK(status.message == "FeedInputs: unable to find feed output nope:0");
    status = session.run({{"x:0", floats({1})}}, {"nope:0"}, &outputs);
    CHECK(status.code == fastserve::tensorflow::kNotFound);
    Tensor integers = Tensor::allocate(DataType::kInt32, {1, 1});
    status = session.run({{"x:0", integers}}, {"y:0"}, &outputs);
    CHECK(status.code == fastserve::tensorflow::kInvalidArgument);
    CHECK(status.message.find("int32") != std::string::npos);
    Tensor short_buffer = floats({1, 2});
    short_buffer.bytes = 4;
    status = session.run({{"x:0", short_buffer}}, {"y:0"}, &outputs);
    CHECK(status.code == fastserve::tensorflow::kInvalidArgument);
  }

  session.close();
  std::vector<Tensor> outputs;
  Status closed = session.run({{"x:0", floats({1})}}, {"y:0"}, &outputs);
  CHECK(closed.code == fastserve::tensorflow::kFailedPrecondition);
  CHECK(closed.message == "Session has been closed.");

  return finish("all tensorflow session checks passed");
}
