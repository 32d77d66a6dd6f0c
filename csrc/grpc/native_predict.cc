#include "grpc/native_predict.h"

#include <chrono>
#include <functional>
#include <optional>

#include "grpc/predict_codec.h"

namespace fastserve {
namespace {

constexpr std::size_t kMaxMessageBytes = 1024;  // TF Serving's, as fastserve.errors

bool is_predict_method(const std::string& method) {
  return method == "tensorflow/serving/predict" || method == "tensorflow/serving/classify" ||
         method == "tensorflow/serving/regress";
}

double micros_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
      .count();
}

// The signature's outputs the request asks for (all without a filter), as aliases and specs;
// nothing when the filter names an unknown output or one twice (Python words those errors).
bool chosen_outputs(const wire::PredictRequest& request, const SignatureSpec& signature,
                    std::vector<const std::string*>* aliases,
                    std::vector<const TensorSpec*>* specs) {
  if (request.output_filter_size() == 0) {
    for (const auto& [alias, output] : signature.outputs) {
      aliases->push_back(&alias);
      specs->push_back(&output);
    }
    return true;
  }
  for (const std::string& alias : request.output_filter()) {
    auto wanted = signature.outputs.find(alias);
    if (wanted == signature.outputs.end()) return false;
    for (const std::string* seen : *aliases) {
      if (*seen == alias) return false;
    }
    aliases->push_back(&wanted->first);
    specs->push_back(&wanted->second);
  }
  return true;
}

}  // namespace

std::string truncated_message(std::string message) {
  if (message.size() <= kMaxMessageBytes) return message;
  std::size_t cut = kMaxMessageBytes;
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
  message.resize(cut);
  return message + "...TRUNCATED";
}

ServableHandle lookup_version(const ServableTable& table, const wire::ModelSpec& spec) {
  if (spec.name().empty()) return {};
  Lookup found;
  switch (spec.version_choice_case()) {
    case wire::ModelSpec::kVersion:
      found = table.acquire_version(spec.name(), spec.version().value());
      break;
    case wire::ModelSpec::kVersionLabel:
      found = table.acquire_label(spec.name(), spec.version_label());
      break;
    default:
      found = table.acquire_latest(spec.name());
  }
  if (found.status != LookupStatus::kOk) return {};
  return std::move(found.handle);
}

bool run_natively(Call& call, const wire::PredictRequest& request, const NamedTensors& inputs,
                  const NativeServable& servable, ServableHandle& handle,
                  const NativePredictOptions& options) {
  if (!servable.session) return false;
  const auto& spec = request.model_spec();
  const std::string& name =
      spec.signature_name().empty() ? std::string("serving_default") : spec.signature_name();
  auto found = servable.signatures.find(name);
  if (found == servable.signatures.end()) return false;
  const SignatureSpec& signature = found->second;
  if (options.check_method_names && !is_predict_method(signature.method_name)) return false;
  if (inputs.size() != signature.inputs.size()) return false;
  NamedTensors feeds;
  feeds.reserve(inputs.size());
  for (const auto& [alias, tensor] : inputs) {
    auto wanted = signature.inputs.find(alias);
    if (wanted == signature.inputs.end() || wanted->second.dtype != tensor.dtype) return false;
    feeds.emplace_back(wanted->second.name, tensor);
  }
  std::vector<const std::string*> aliases;
  std::vector<const TensorSpec*> specs;
  if (!chosen_outputs(request, signature, &aliases, &specs)) return false;
  auto remaining = call.remaining();
  if (call.finished() || (remaining && *remaining <= 0)) return false;

  std::vector<std::string> fetches;
  fetches.reserve(specs.size());
  for (const TensorSpec* output : specs) fetches.push_back(output->name);
  std::vector<Tensor> outputs;
  tensorflow::Status status;
  const auto ran = std::chrono::steady_clock::now();
  if (servable.batcher) {
    std::optional<Clock::time_point> deadline;
    if (remaining) {
      deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(*remaining));
    }
    status = servable.batcher->run(
        feeds, fetches, &outputs, deadline,
        [&call](std::function<void()> abandon) { call.on_cancel(std::move(abandon)); });
  } else {
    status = servable.session->run(feeds, fetches, &outputs);
  }
  const double runtime_micros = micros_since(ran);
  auto logged = [&](int code) {
    if (options.log) {
      options.log->add(RequestRecord{spec.name(), code, micros_since(call.started()),
                                     runtime_micros, servable.runtime, call.peer()});
    }
  };
  auto finish = [&](const grpc::Status& answer) {
    call.finish(answer);
    logged(static_cast<int>(answer.error_code()));
  };
  if (!status.ok()) {
    finish(grpc::Status(static_cast<grpc::StatusCode>(status.code),
                        truncated_message(status.message)));
    return true;
  }
  if (outputs.size() != fetches.size()) {
    finish(grpc::Status(grpc::StatusCode::UNKNOWN, "Predict internal error"));
    return true;
  }
  wire::PredictResponse response;
  auto* model_spec = response.mutable_model_spec();
  model_spec->set_name(spec.name());
  model_spec->mutable_version()->set_value(handle.version());
  model_spec->set_signature_name(name);
  auto& fields = *response.mutable_outputs();
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& tensor = outputs[i];
    if (specs[i]->dtype != DataType::kInvalid && tensor.dtype != specs[i]->dtype) {
      finish(grpc::Status(grpc::StatusCode::INTERNAL,
                          "output " + *aliases[i] + " is not of its signature's type"));
      return true;
    }
    if (!encode_tensor(tensor, options.tensor_content, &fields[*aliases[i]])) {
      finish(grpc::Status(grpc::StatusCode::INTERNAL,
                          "cannot encode output " + *aliases[i] + " of its type"));
      return true;
    }
  }
  handle.release();
  call.finish_message(response);  // serialized by the responder, into gRPC's own buffer
  logged(0);
  return true;
}

}  // namespace fastserve
