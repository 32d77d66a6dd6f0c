#include "grpc/echo.h"

#include "fastserve/predict.pb.h"

namespace fastserve {

void EchoPredict::handle(std::shared_ptr<Call> call) {
  wire::PredictRequest request;
  if (!call->parse_request(&request)) {
    call->finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "not a PredictRequest"));
    return;
  }
  wire::PredictResponse response;
  *response.mutable_model_spec() = request.model_spec();
  for (const auto& [alias, tensor] : request.inputs()) {
    (*response.mutable_outputs())[alias == "x" ? "y" : alias] = tensor;
  }
  call->finish_message(response);
}

}  // namespace fastserve
