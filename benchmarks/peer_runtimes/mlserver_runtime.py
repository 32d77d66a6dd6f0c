"""An MLServer custom runtime serving half_plus_two: V2 input "x" (FP32, [n]) -> output "y".

benchmarks/peers.py copies this file and half_plus_two_session.py into the folder it starts
`mlserver start` on; model-settings.json names this class and gives the SavedModel's path as
parameters.uri. Runs in the mlserver virtualenv (benchmarks/setup_peers.sh)."""

from __future__ import annotations

from half_plus_two_session import HalfPlusTwo
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class HalfPlusTwoRuntime(MLModel):
    async def load(self) -> bool:
        self._model = HalfPlusTwo(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        y = self._model(x)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            # NumpyCodec.encode_output would report a 1-D y as [n, 1]; y is [n], like x.
            outputs=[
                ResponseOutput(name="y", shape=list(y.shape), datatype="FP32", data=y.tolist())
            ],
        )
