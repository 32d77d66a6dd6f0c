"""Finding the signature a request names, with TF Serving's wording when it is missing."""

from __future__ import annotations

import enum

from fastserve.errors import Code, ServingError
from fastserve.servables.base import Servable
from fastserve.types import DEFAULT_SIGNATURE, Signature


class Asking(enum.Enum):
    """Who asks for a signature: TF Serving words a missing one differently for each (gRPC
    Predict checks late and answers FAILED_PRECONDITION, REST checks first)."""

    GRPC_PREDICT = (Code.FAILED_PRECONDITION, 'Serving signature key "{}" not found.')
    REST_PREDICT = (
        Code.INVALID_ARGUMENT,
        'Serving signature name: "{}" not found in signature def',
    )
    CLASSIFY_OR_REGRESS = (Code.INVALID_ARGUMENT, "No signature was found with the name: {}")
    MULTI_INFERENCE = (Code.INVALID_ARGUMENT, "Requested signature not found in model graph: {}")


def find_signature(
    servable: Servable, name: str, asking: Asking = Asking.GRPC_PREDICT
) -> Signature:
    """The signature `name` of `servable` ("" means serving_default)."""
    name = name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        code, message = asking.value
        raise ServingError(code, message.format(name))
    return signature
