// The native gRPC server's parts that need no network: Call (answer once, cancel races),
// WorkerPool, and the Predict codec. Built with sanitizers by tests/test_cpp_core.py.
#include "check.h"
#include <atomic>
#include <cassert>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "fastserve/predict.pb.h"
#include "grpc/call.h"
#include "grpc/predict_codec.h"
#include "grpc/request_log.h"
#include "grpc/worker_pool.h"

using fastserve::Call;
using fastserve::DataType;
using fastserve::Responder;
using fastserve::Tensor;
using fastserve::WorkerPool;


using fastserve::testing::finish;

namespace {

class CountingResponder : public Responder {
 public:
  void respond(const grpc::Status& status, std::string response) override {
    answers.fetch_add(1);
    last_code = status.error_code();
    last_response = std::move(response);
  }
  std::atomic<int> answers{0};
  grpc::StatusCode last_code = grpc::StatusCode::OK;
  std::string last_response;
};

void call_answers_once_when_finish_and_cancel_race() {
  for (int round = 0; round < 200; ++round) {
    CountingResponder responder;
    auto call = std::make_shared<Call>("/m", "request", "peer", std::nullopt, &responder);
    std::atomic<int> cancelled{0};
    call->on_cancel([&cancelled] { cancelled.fetch_add(1); });
    std::thread a([&] { call->finish(grpc::Status::OK, "answer"); });
    std::thread b([&] { call->cancel(); });
    std::thread c([&] { call->cancel(); });
    a.join();
    b.join();
    c.join();
    CHECK(responder.answers.load() == 1);
    CHECK(cancelled.load() == 1);
    CHECK(call->finished());
    CHECK(call->cancelled());
    // A callback registered after the cancellation runs at once.
    call->on_cancel([&cancelled] { cancelled.fetch_add(1); });
    CHECK(cancelled.load() == 2);
  }
}

void call_deadline() {
  CountingResponder responder;
  Call without("/m", "", "", std::nullopt, &responder);
  CHECK(!without.remaining().has_value());
  Call with("/m", "", "", std::chrono::steady_clock::now() + std::chrono::seconds(5),
            &responder);
  CHECK(with.remaining().has_value() && *with.remaining() > 4 && *with.remaining() <= 5);
  Call past("/m", "", "", std::chrono::steady_clock::now() - std::chrono::seconds(1), &responder);
  CHECK(*past.remaining() == 0.0);
}

// A body that counts how often it is joined.
class CountedBody : public fastserve::RequestBody {
 public:
  explicit CountedBody(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string joined() const override {
    joins.fetch_add(1);
    return bytes_;
  }
  bool parse(google::protobuf::MessageLite* message) const override {
    return message->ParseFromString(bytes_);
  }
  mutable std::atomic<int> joins{0};

 private:
  const std::string bytes_;
};

void call_parses_its_body_in_place_and_joins_it_once() {
  fastserve::wire::PredictRequest sent;
  sent.mutable_model_spec()->set_name("m");
  const std::string bytes = sent.SerializeAsString();
  CountingResponder responder;
  auto owned = std::make_unique<CountedBody>(bytes);
  const CountedBody* body = owned.get();
  Call call("/m", std::move(owned), "peer", std::nullopt, &responder);
  fastserve::wire::PredictRequest parsed;
  CHECK(call.parse_request(&parsed) && parsed.model_spec().name() == "m");
  CHECK(body->joins.load() == 0);  // parsing needs no joined copy
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) readers.emplace_back([&] { CHECK(call.request() == bytes); });
  for (auto& reader : readers) reader.join();
  CHECK(body->joins.load() == 1);
  // An OK message goes to the responder's respond_message: by default serialized.
  fastserve::wire::PredictResponse answer;
  answer.mutable_model_spec()->set_name("m");
  CHECK(call.finish_message(answer));
  CHECK(!call.finish_message(answer));  // answered once
  CHECK(responder.answers.load() == 1 && responder.last_response == answer.SerializeAsString());
}

void worker_pool_runs_every_job_then_stops() {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(3);
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p) {
      producers.emplace_back([&] {
        for (int i = 0; i < 250; ++i) CHECK(pool.submit([&ran] { ran.fetch_add(1); }));
      });
    }
    for (auto& producer : producers) producer.join();
    pool.stop();
    CHECK(ran.load() == 1000);
    CHECK(!pool.submit([] {}));
    pool.stop();  // idempotent
  }
  CHECK(ran.load() == 1000);
}

void codec_round_trips_typed_values_and_content() {
  fastserve::wire::TensorProto proto;
  proto.set_dtype(fastserve::wire::DT_FLOAT);
  proto.mutable_tensor_shape()->add_dim()->set_size(2);
  proto.mutable_tensor_shape()->add_dim()->set_size(3);
  for (int i = 0; i < 6; ++i) proto.add_float_val(static_cast<float>(i) / 2);
  auto owner = std::make_shared<int>(0);
  auto tensor = fastserve::decode_tensor(proto, owner, 1 << 20, 64);
  CHECK(tensor.has_value());
  CHECK(tensor->dtype == DataType::kFloat);
  CHECK((tensor->shape == std::vector<std::int64_t>{2, 3}));
  CHECK(tensor->bytes == 6 * sizeof(float));
  CHECK(static_cast<const float*>(tensor->data)[5] == 2.5f);

  fastserve::wire::TensorProto typed;
  CHECK(fastserve::encode_tensor(*tensor, false, &typed));
  CHECK(typed.float_val_size() == 6 && typed.float_val(4) == 2.0f);
  CHECK(typed.tensor_shape().dim(1).size() == 3);
  fastserve::wire::TensorProto content;
  CHECK(fastserve::encode_tensor(*tensor, true, &content));
  CHECK(content.tensor_content().size() == 24 && content.float_val_size() == 0);
  auto again = fastserve::decode_tensor(content, owner, 1 << 20, 64);
  CHECK(again && std::memcmp(again->data, tensor->data, 24) == 0);

  fastserve::wire::TensorProto small;  // int8 travels in int_val
  small.set_dtype(fastserve::wire::DT_INT8);
  small.mutable_tensor_shape()->add_dim()->set_size(2);
  small.add_int_val(-3);
  small.add_int_val(7);
  auto narrowed = fastserve::decode_tensor(small, owner, 1 << 20, 64);
  CHECK(narrowed && static_cast<const std::int8_t*>(narrowed->data)[0] == -3);
  fastserve::wire::TensorProto widened;
  CHECK(fastserve::encode_tensor(*narrowed, false, &widened));
  CHECK(widened.int_val_size() == 2 && widened.int_val(1) == 7);

  fastserve::wire::TensorProto strings;
  strings.set_dtype(fastserve::wire::DT_STRING);
  strings.mutable_tensor_shape()->add_dim()->set_size(2);
  strings.add_string_val("a");
  strings.add_string_val(std::string("b\0c", 3));
  auto decoded = fastserve::decode_tensor(strings, owner, 1 << 20, 64);
  CHECK(decoded && decoded->strings.size() == 2 && decoded->strings[1].size() == 3);
}

void codec_leaves_the_unusual_to_python() {
  auto owner = std::make_shared<int>(0);
  fastserve::wire::TensorProto proto;
  proto.set_dtype(fastserve::wire::DT_FLOAT);
  proto.mutable_tensor_shape()->add_dim()->set_size(3);
  proto.add_float_val(1.0f);  // TensorFlow repeats the last value: Python's rules
  CHECK(!fastserve::decode_tensor(proto, owner, 1 << 20, 64));
  proto.clear_float_val();
  proto.set_tensor_content(std::string(8, '\0'));  // 2 floats for 3 elements
  CHECK(!fastserve::decode_tensor(proto, owner, 1 << 20, 64));
  proto.set_tensor_content(std::string(12, '\0'));
  CHECK(fastserve::decode_tensor(proto, owner, 1 << 20, 64));
  CHECK(!fastserve::decode_tensor(proto, owner, 8, 64));  // over the byte limit
  proto.mutable_tensor_shape()->mutable_dim(0)->set_size(-1);
  CHECK(!fastserve::decode_tensor(proto, owner, 1 << 20, 64));
  fastserve::wire::TensorProto huge;  // a shape whose element count overflows
  huge.set_dtype(fastserve::wire::DT_FLOAT);
  for (int i = 0; i < 4; ++i) huge.mutable_tensor_shape()->add_dim()->set_size(1LL << 40);
  CHECK(!fastserve::decode_tensor(huge, owner, 1 << 20, 64));
  fastserve::wire::TensorProto deep;
  deep.set_dtype(fastserve::wire::DT_FLOAT);
  for (int i = 0; i < 65; ++i) deep.mutable_tensor_shape()->add_dim()->set_size(1);
  deep.add_float_val(1.0f);
  CHECK(!fastserve::decode_tensor(deep, owner, 1 << 20, 64));
  fastserve::wire::TensorProto quantized;
  quantized.set_dtype(fastserve::wire::DT_QINT8);
  CHECK(!fastserve::decode_tensor(quantized, owner, 1 << 20, 64));
}

void request_log_keeps_every_record_across_concurrent_drains() {
  fastserve::RequestLog log;
  std::atomic<bool> done{false};
  std::size_t drained = 0;
  std::thread drainer([&] {
    while (!done.load()) drained += log.drain().size();
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&log] {
      for (int i = 0; i < 2000; ++i) {
        log.add(fastserve::RequestRecord{"model", 0, 1.0, 0.5, "TF1", "peer"});
      }
    });
  }
  for (auto& writer : writers) writer.join();
  done.store(true);
  drainer.join();
  drained += log.drain().size();
  CHECK(drained == 8000);
  CHECK(log.dropped() == 0);
}

}  // namespace

int main() {
  request_log_keeps_every_record_across_concurrent_drains();
  call_answers_once_when_finish_and_cancel_race();
  call_deadline();
  call_parses_its_body_in_place_and_joins_it_once();
  worker_pool_runs_every_job_then_stops();
  codec_round_trips_typed_values_and_content();
  codec_leaves_the_unusual_to_python();
  return finish("all grpc parts checks passed");
}
