"""benchmarks/peers.py without the peers: the V2 messages it sends and reads, and the message
that names the setup script when a peer is not installed. Starting the peers needs
benchmarks/setup_peers.sh (about 2 GB a peer), so it is `benchmarks/peers.py --check`'s job,
not the suite's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers


def test_v2_request_carries_x_in_fp32_contents_with_the_v2_field_numbers() -> None:
    data = peers.v2_grpc_request(3)
    # model_name is field 1 and inputs field 5 of inference.ModelInferRequest.
    assert data.startswith(b"\x0a\x0dhalf_plus_two\x2a")
    request_class, _ = peers._v2_messages()
    request = request_class.FromString(data)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("x", "FP32", [3])
    assert list(tensor.contents.fp32_contents) == [0.0, 0.25, 0.5]
    # fp32_contents is field 6 of InferTensorContents, packed: tag 0x32, 12 bytes.
    assert b"\x32\x0c" + np.asarray([0.0, 0.25, 0.5], "<f4").tobytes() in data


def test_v2_response_is_read_from_raw_output_contents_or_contents() -> None:
    _, response_class = peers._v2_messages()
    y = 0.5 * peers.values(4) + 2
    raw = response_class(model_name="half_plus_two")
    raw.outputs.add(name="y", datatype="FP32", shape=[4])
    raw.raw_output_contents.append(y.astype("<f4").tobytes())
    typed = response_class(model_name="half_plus_two")
    typed.outputs.add(name="y", datatype="FP32", shape=[4]).contents.fp32_contents.extend(y)
    for message in (raw, typed):
        name, shape, got = peers.v2_grpc_response(message.SerializeToString())
        peers.verify("test", 4, name, shape, got)
    with pytest.raises(AssertionError, match=r"y\[1\] = 9.0"):
        peers.verify("test", 4, "y", [4], np.asarray([2, 9, 2.25, 2.375], np.float32))


def test_rest_body_is_v2_json() -> None:
    assert peers.v2_rest_body(2) == (
        b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[0.0,0.25]}]}'
    )


def test_a_missing_peer_names_the_setup_script(tmp_path: Path) -> None:
    with pytest.raises(peers.PeerNotInstalled, match=r"setup_peers\.sh mlserver triton"):
        peers.make_targets(tmp_path / "model", venvs=tmp_path / "venvs")


def test_v2_messages_carry_a_matrix_with_its_shape() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    request_class, _ = peers._v2_messages()
    request = request_class.FromString(peers.v2_grpc_message("trees", "inputs", x))
    (tensor,) = request.inputs
    assert (request.model_name, tensor.name, list(tensor.shape)) == ("trees", "inputs", [2, 3])
    assert list(tensor.contents.fp32_contents) == x.reshape(-1).tolist()
    assert peers.v2_rest_json("inputs", x) == (
        b'{"inputs":[{"name":"inputs","shape":[2,3],"datatype":"FP32",'
        b'"data":[0.0,0.25,0.5,0.75,1.0,1.25]}]}'
    )
