"""Batching parameters: TF Serving's defaults, its checks and its text proto."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastserve.config.batching import (
    PER_MODEL_FILE,
    common_parameters,
    from_mapping,
    parameters_for,
    read_text_proto,
)
from fastserve.config.model_server import load_yaml
from fastserve.errors import Code, ConfigError, ServingError
from fastserve.servables.batching_parameters import BatchingParameters


def test_tf_serving_defaults() -> None:
    parameters = BatchingParameters()
    assert (parameters.max_batch_size, parameters.batch_timeout_micros) == (1000, 0)
    assert parameters.max_enqueued_batches == 10
    assert parameters.num_batch_threads == (os.cpu_count() or 1)
    assert parameters.thread_pool_name == "batch_threads"
    assert parameters.execution_batch_size == 1000


def test_text_proto(tmp_path: Path) -> None:
    path = tmp_path / "batching.config"
    path.write_text(
        "max_batch_size { value: 128 }\n"
        "batch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 1000000 }\n"
        "num_batch_threads { value: 8 }\n"
        "allowed_batch_sizes: 16\nallowed_batch_sizes: 32\n"
        "pad_variable_length_inputs: true\n"
        "enable_large_batch_splitting { value: true }\n"
        "max_execution_batch_size { value: 32 }\n"
    )
    parameters = BatchingParameters().merged(read_text_proto(str(path))).checked()
    assert parameters == BatchingParameters(
        max_batch_size=128,
        batch_timeout_micros=0,
        max_enqueued_batches=1000000,
        num_batch_threads=8,
        allowed_batch_sizes=(16, 32),
        pad_variable_length_inputs=True,
        enable_large_batch_splitting=True,
        max_execution_batch_size=32,
    )
    # allowed_batch_sizes end at the execution size when splitting (checked below).
    assert parameters.execution_batch_size == 32


def test_unset_fields_keep_defaults(tmp_path: Path) -> None:
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 64 }\n")
    assert read_text_proto(str(path)) == {"max_batch_size": 64}


def test_bad_text_proto(tmp_path: Path) -> None:
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size: 64\n")  # a wrapper field needs { value: ... }
    with pytest.raises(ConfigError, match=f"Invalid protobuf file: '{path}'"):
        read_text_proto(str(path))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_batch_size": 0}, "input_batch_size_limit must be positive; was 0"),
        ({"batch_timeout_micros": -5}, "batch_timeout_micros must be non-negative; was -5"),
        ({"num_batch_threads": 0}, "num_batch_threads must be positive; was 0"),
        (
            {"max_enqueued_batches": 0, "enable_large_batch_splitting": True},
            "max_enqueued_batches must be positive; was 0",
        ),
        (
            {"max_batch_size": 128, "allowed_batch_sizes": (32, 64)},
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 64; expected 128",
        ),
        (
            {"max_batch_size": 64, "allowed_batch_sizes": (32, 16, 64)},
            "allowed_batch_sizes entries must be monotonically increasing",
        ),
        (
            {
                "max_batch_size": 8,
                "enable_large_batch_splitting": True,
                "max_execution_batch_size": 16,
            },
            "When enable_large_batch_splitting is true, input_batch_size_limit must be greater than or equal to max_execution_batch_size.",
        ),
        (
            {
                "max_batch_size": 64,
                "enable_large_batch_splitting": True,
                "max_execution_batch_size": 16,
                "allowed_batch_sizes": (8, 64),
            },
            "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; last entry was 64; expected 16",
        ),
    ],
)
def test_checks(fields: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        BatchingParameters(**fields).checked()
    assert str(caught.value) == message


def test_zero_enqueued_batches_means_one_without_splitting() -> None:
    assert BatchingParameters(max_enqueued_batches=0).checked().max_enqueued_batches == 1


def test_yaml_batching_section(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  - name: a\n"
        "    base_path: a\n"
        "    batching:\n"
        "      max_batch_size: 32\n"
        "      batch_timeout_micros: 2000\n"
        "      allowed_batch_sizes: [8, 32]\n"
        "      pad_variable_length_inputs: true\n"
    )
    (model,) = load_yaml(str(path), ()).models
    assert model.batching == {
        "max_batch_size": 32,
        "batch_timeout_micros": 2000,
        "allowed_batch_sizes": (8, 32),
        "pad_variable_length_inputs": True,
    }


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("      max_batch_sise: 32\n", ":5: models[0].batching.max_batch_sise: unknown field"),
        (
            "      max_batch_size: lots\n",
            ":5: models[0].batching.max_batch_size: expected an integer",
        ),
        (
            "      allowed_batch_sizes: [1, x]\n",
            ":5: models[0].batching.allowed_batch_sizes: expected a list of integers",
        ),
        (
            "      pad_variable_length_inputs: 1\n",
            ":5: models[0].batching.pad_variable_length_inputs: expected true or false",
        ),
        (
            "      num_batch_threads: 4\n",
            ":5: models[0].batching.num_batch_threads: the batch threads are shared by every "
            "model; set it in --batching_parameters_file",
        ),
    ],
)
def test_yaml_batching_errors(tmp_path: Path, section: str, message: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - name: a\n    base_path: a\n    batching:\n" + section)
    with pytest.raises(ConfigError) as caught:
        load_yaml(str(path), ())
    assert message in str(caught.value)


def test_from_mapping_directly() -> None:
    assert from_mapping({"max_enqueued_batches": 2}, "x") == {"max_enqueued_batches": 2}


# --- the server's parameters and each model's ---------------------------------------------------


def test_common_parameters_off_on_and_from_a_file(tmp_path: Path) -> None:
    assert common_parameters(False, "", False) is None
    assert common_parameters(True, "", False) == BatchingParameters(
        thread_pool_name="model_server_batch_threads"
    )
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 8 }\nnum_batch_threads { value: 3 }\n")
    assert common_parameters(True, str(path), False) == BatchingParameters(
        max_batch_size=8, num_batch_threads=3
    )
    assert common_parameters(True, str(path), True) == BatchingParameters(
        max_batch_size=8, num_batch_threads=3
    )


@pytest.mark.parametrize(
    ("enable", "text", "per_model", "message"),
    [
        (
            False,
            "max_batch_size { value: 8 }\n",
            False,
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true.",
        ),
        (
            False,
            "",
            True,
            "--enable_per_model_batching_parameters applies only with --enable_batching",
        ),
        (
            True,
            "max_batch_size { value: 0 }\n",
            False,
            "input_batch_size_limit must be positive; was 0",
        ),
    ],
)
def test_common_parameters_errors(
    tmp_path: Path, enable: bool, text: str, per_model: bool, message: str
) -> None:
    path = ""
    if text:
        (tmp_path / "batching.config").write_text(text)
        path = str(tmp_path / "batching.config")
    with pytest.raises(ConfigError) as caught:
        common_parameters(enable, path, per_model)
    assert str(caught.value) == message


def test_parameters_for_an_unbatched_model_is_none() -> None:
    assert parameters_for(None, None, False) is None


def test_parameters_for_a_model_of_its_own_over_the_servers(tmp_path: Path) -> None:
    own = parameters_for({"max_batch_size": 4}, None, False)
    assert own is not None
    assert own(str(tmp_path)) == BatchingParameters(max_batch_size=4)
    common = BatchingParameters(num_batch_threads=2, batch_timeout_micros=100)
    over = parameters_for({"max_batch_size": 4}, common, False)
    assert over is not None
    assert over(str(tmp_path)) == BatchingParameters(
        max_batch_size=4, num_batch_threads=2, batch_timeout_micros=100
    )
    servers = parameters_for(None, common, False)
    assert servers is not None and servers(str(tmp_path)) == common


def test_parameters_for_per_model_files(tmp_path: Path) -> None:
    common = BatchingParameters(num_batch_threads=2, max_batch_size=99)
    per_version = parameters_for({"max_batch_size": 4}, common, True)
    assert per_version is not None
    (tmp_path / "1").mkdir()
    assert per_version(str(tmp_path / "1")) is None  # no file: that version is not batched
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / PER_MODEL_FILE).write_text("max_batch_size { value: 16 }\n")
    # The file's fields over TF Serving's defaults; only the batch threads are the server's.
    assert per_version(str(tmp_path / "2")) == BatchingParameters(
        max_batch_size=16, num_batch_threads=2
    )
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / PER_MODEL_FILE).write_text("max_batch_size: 16\n")
    with pytest.raises(ServingError) as caught:
        per_version(str(tmp_path / "3"))
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert str(tmp_path / "3" / PER_MODEL_FILE) in caught.value.message
