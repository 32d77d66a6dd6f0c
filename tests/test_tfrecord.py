"""codecs/tfrecord.py: TFRecord files read without TensorFlow, held against TensorFlow's own
writer and reader: the same records, and on a damaged file the same code and message."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import tensorflow as tf

from fastserve.codecs.tfrecord import frame, masked_crc, read_records
from fastserve.errors import Code, ServingError

RECORDS = [b"hello", b"", b"\x00\xff" * 3000, b"world!!"]


def tensorflow_file(path: Path, records: list[bytes]) -> bytes:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path.read_bytes()


def tensorflow_reads(path: Path) -> tuple[list[bytes], tuple[Code, str] | None]:
    """What tf.data reads from `path`: the records before any error, and the error."""
    read: list[bytes] = []
    try:
        for record in tf.data.TFRecordDataset(str(path)):
            read.append(record.numpy())
    except tf.errors.OpError as error:
        message = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", error.message)
        return read, (Code(error.error_code), re.sub(r"\s*\[Op:.*$", "", message, flags=re.S))
    return read, None


def we_read(path: Path) -> tuple[list[bytes], tuple[Code, str] | None]:
    read: list[bytes] = []
    try:
        for record in read_records(str(path)):
            read.append(record)
    except ServingError as error:
        return read, (error.code, error.message)
    return read, None


def test_reads_what_tensorflow_writes(tmp_path: Path) -> None:
    path = tmp_path / "records"
    data = tensorflow_file(path, RECORDS)
    assert list(read_records(str(path))) == RECORDS
    assert b"".join(frame(record) for record in RECORDS) == data


def _cut(at: int) -> Callable[[bytes], bytes]:
    return lambda data: data[:at]


def _flip(at: int) -> Callable[[bytes], bytes]:
    return lambda data: data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def huge_header() -> bytes:
    length = (2**62).to_bytes(8, "little")
    return length + masked_crc(length).to_bytes(4, "little")


DAMAGES = {
    "empty file": _cut(0),
    "data cut short": lambda data: data[:-7],
    "data CRC cut short": lambda data: data[:-2],
    "header cut short at the end": lambda data: data + b"\x05\x00\x00",
    "first length corrupted": _flip(2),
    "first length CRC corrupted": _flip(9),
    "first data corrupted": _flip(13),
    "second length corrupted": _flip(21 + 1),
    "second data CRC corrupted": _flip(21 + 12 + 0 + 1),
    "not a TFRecord file": lambda data: b"predict x=1.0\n" * 10,
    "a huge length with a valid CRC": lambda data: data[:21] + huge_header(),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_damaged_files_fail_as_tensorflows_reader_fails(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / "records"
    path.write_bytes(damage(tensorflow_file(path, RECORDS)))
    assert we_read(path) == tensorflow_reads(path)


def test_unopenable_files_fail_as_tensorflows_reader_fails(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert we_read(missing) == tensorflow_reads(missing)
    assert we_read(missing)[1] == (Code.NOT_FOUND, f"{missing}; No such file or directory")
    assert we_read(tmp_path) == tensorflow_reads(tmp_path)
