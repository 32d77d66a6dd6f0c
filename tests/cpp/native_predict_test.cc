// The native Predict path (csrc/grpc/native_predict.h) against a real SavedModel (TF Serving's
// half_plus_two, built by tests/test_cpp_tensorflow.py), looked up through a real servable
// table, from many threads at once, unbatched and batched. Usage:
//   native_predict_test <libtensorflow_cc.so.2> <half_plus_two export dir> <config hex>
#include "check.h"
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "grpc/native_predict.h"
#include "grpc/predict_codec.h"

using fastserve::Call;
using fastserve::DataType;
using fastserve::NamedTensors;
using fastserve::NativePredictOptions;
using fastserve::NativeServable;
using fastserve::ServableHandle;
using fastserve::ServableTable;
using fastserve::Tensor;
namespace wire = fastserve::wire;

using fastserve::testing::finish;
using fastserve::testing::from_hex;

namespace {




class Answer : public fastserve::Responder {
 public:
  void respond(const grpc::Status& status, std::string response) override {
    answers.fetch_add(1);
    code = status.error_code();
    message = status.error_message();
    bytes = std::move(response);
  }
  std::atomic<int> answers{0};
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
  std::string bytes;
};

wire::PredictRequest request(const std::string& model, float x) {
  wire::PredictRequest request;
  request.mutable_model_spec()->set_name(model);
  auto& proto = (*request.mutable_inputs())["x"];
  proto.set_dtype(wire::DT_FLOAT);
  proto.mutable_tensor_shape()->add_dim()->set_size(1);
  proto.add_float_val(x);
  return request;
}

NamedTensors decoded(const std::shared_ptr<wire::PredictRequest>& request) {
  NamedTensors inputs;
  for (const auto& [alias, proto] : request->inputs()) {
    auto tensor = fastserve::decode_tensor(proto, request, 1 << 20, 32);
    if (tensor) inputs.emplace_back(alias, std::move(*tensor));
  }
  return inputs;
}

// Looks up and serves one request as the handler does; returns whether the native path took
// it, with its answer in *answer.
bool serve(const ServableTable& table, const wire::PredictRequest& proto,
           const NativePredictOptions& options, Answer* answer) {
  auto request = std::make_shared<wire::PredictRequest>(proto);
  Call call("/tensorflow.serving.PredictionService/Predict", "", "peer", std::nullopt, answer);
  ServableHandle handle = fastserve::lookup_version(table, request->model_spec());
  if (!handle) return false;
  const auto& servable = *static_cast<const NativeServable*>(handle.payload());
  return fastserve::run_natively(call, *request, decoded(request), servable, handle, options);
}

float answered_y(const Answer& answer) {
  wire::PredictResponse response;
  if (!response.ParseFromString(answer.bytes)) return -1;
  auto found = response.outputs().find("y");
  if (found == response.outputs().end() || found->second.float_val_size() != 1) return -1;
  return found->second.float_val(0);
}

std::shared_ptr<NativeServable> half_plus_two(
    std::shared_ptr<fastserve::tensorflow::TensorFlowSession> session) {
  auto servable = std::make_shared<NativeServable>();
  auto& signature = servable->signatures["serving_default"];
  signature.method_name = "tensorflow/serving/predict";
  signature.inputs["x"] = {"x:0", DataType::kFloat};
  signature.outputs["y"] = {"y:0", DataType::kFloat};
  servable->session = std::move(session);
  servable->runtime = "TF1";
  return servable;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s library export_dir config_hex\n", argv[0]);
    return 2;
  }
  std::string error;
  const auto* api = fastserve::tensorflow::load_tensorflow_api(argv[1], &error);
  if (api == nullptr) {
    std::fprintf(stderr, "cannot load the C API: %s\n", error.c_str());
    return 1;
  }
  auto session = std::make_shared<fastserve::tensorflow::TensorFlowSession>(api);
  if (!session->load(argv[2], {"serve"}, from_hex(argv[3])).ok()) {
    std::fprintf(stderr, "load failed\n");
    return 1;
  }

  ServableTable table;
  auto plain = half_plus_two(session);
  auto batched = half_plus_two(session);
  fastserve::NativeBatchingOptions batching;
  batching.queue.max_batch_size = 8;
  batching.queue.batch_timeout_micros = 500;
  batching.num_batch_threads = 2;
  batched->batcher = std::make_shared<fastserve::NativeBatcher>(session, batching);
  CHECK(table.add("hp", 1, plain));
  CHECK(table.add("hp", 2, plain));
  CHECK(table.add("batched", 1, batched));
  table.set_labels("hp", {{"stable", 1}});
  auto log = std::make_shared<fastserve::RequestLog>();
  NativePredictOptions options;
  options.log = log;

  {  // The latest version, by number, by label; the response names the version served.
    Answer latest, first, labelled;
    CHECK(serve(table, request("hp", 3), options, &latest));
    CHECK(latest.answers == 1 && latest.code == grpc::StatusCode::OK);
    CHECK(answered_y(latest) == 3.5f);
    wire::PredictResponse response;
    CHECK(response.ParseFromString(latest.bytes));
    CHECK(response.model_spec().version().value() == 2);
    CHECK(response.model_spec().signature_name() == "serving_default");
    auto by_number = request("hp", 1);
    by_number.mutable_model_spec()->mutable_version()->set_value(1);
    CHECK(serve(table, by_number, options, &first) && answered_y(first) == 2.5f);
    auto by_label = request("hp", 5);
    by_label.mutable_model_spec()->set_version_label("stable");
    CHECK(serve(table, by_label, options, &labelled) && answered_y(labelled) == 4.5f);
    CHECK(log->drain().size() == 3);
  }

  {  // What the native path leaves to Python, answering nothing.
    Answer answer;
    CHECK(!serve(table, request("nope", 1), options, &answer));
    auto unknown_signature = request("hp", 1);
    unknown_signature.mutable_model_spec()->set_signature_name("other");
    CHECK(!serve(table, unknown_signature, options, &answer));
    auto unknown_output = request("hp", 1);
    unknown_output.add_output_filter("z");
    CHECK(!serve(table, unknown_output, options, &answer));
    auto twice = request("hp", 1);
    twice.add_output_filter("y");
    twice.add_output_filter("y");
    CHECK(!serve(table, twice, options, &answer));
    auto wrong_type = request("hp", 1);
    auto& x = (*wrong_type.mutable_inputs())["x"];
    x.clear_float_val();
    x.set_dtype(wire::DT_DOUBLE);
    x.add_double_val(1);
    CHECK(!serve(table, wrong_type, options, &answer));
    auto extra_input = request("hp", 1);
    (*extra_input.mutable_inputs())["w"] = extra_input.inputs().at("x");
    CHECK(!serve(table, extra_input, options, &answer));
    CHECK(answer.answers == 0);
  }

  {  // tensor_content on request.
    Answer answer;
    NativePredictOptions as_content = options;
    as_content.tensor_content = true;
    CHECK(serve(table, request("hp", 4), as_content, &answer));
    wire::PredictResponse response;
    CHECK(response.ParseFromString(answer.bytes));
    const auto& y = response.outputs().at("y");
    CHECK(y.float_val_size() == 0 && y.tensor_content().size() == sizeof(float));
    float value = 0;
    std::memcpy(&value, y.tensor_content().data(), sizeof(float));
    CHECK(value == 4.0f);
  }

  // Many threads at once, unbatched and batched; every request answered once and right.
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&table, &options, &bad, t] {
      for (int i = 0; i < 40; ++i) {
        const float x = static_cast<float>(t * 100 + i);
        Answer answer;
        if (!serve(table, request(t % 2 == 0 ? "hp" : "batched", x), options, &answer) ||
            answer.answers != 1 || answered_y(answer) != 0.5f * x + 2) {
          bad.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(bad.load() == 0);
  CHECK(log->drain().size() == 1 + 240);

  {  // Once a version is removed, its handle is gone when run_natively returns.
    CHECK(table.remove("hp", 2));
    Answer answer;
    CHECK(serve(table, request("hp", 0), options, &answer) && answered_y(answer) == 2.0f);
    CHECK(table.handle_count("hp", 2) == 0 && table.handle_count("hp", 1) == 0);
  }

  batched->batcher->stop();
  return finish("all native predict checks passed");
}
