"""TFRecord files read without TensorFlow, with TensorFlow's checks and error messages.

A TFRecord file is a run of records, each framed as
    uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes,
    `length` bytes of data, uint32 masked CRC-32C of the data
where masking is TensorFlow's: rotate the CRC right by 15 bits and add 0xa282ead8. TF Serving's
warmup file is one (of PredictionLog records). The CRCs are computed by google-crc32c (a C
library where its wheel has one).

What TensorFlow's reader (tf.data.TFRecordDataset) does at the edges, kept here because the
messages reach users: a header cut short at the end of the file ends the file quietly; a
record whose data is cut short is DATA_LOSS "truncated record at <offset>"; a CRC that does not
match is DATA_LOSS "corrupted record at <offset>" (with a hint at offset 0, where a file that
is not a TFRecord at all fails).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c

from fastserve.errors import Code, ServingError

_HEADER = struct.Struct("<QI")  # length, masked CRC of the length
_FOOTER = struct.Struct("<I")  # masked CRC of the data
_MASK_DELTA = 0xA282EAD8

# How TensorFlow's file system words an unreadable file: the code for the errno.
_OPEN_ERRORS = {
    errno.ENOENT: Code.NOT_FOUND,
    errno.EISDIR: Code.FAILED_PRECONDITION,
    errno.EACCES: Code.PERMISSION_DENIED,
    errno.EPERM: Code.PERMISSION_DENIED,
}


def masked_crc(data: bytes) -> int:
    """TensorFlow's masked CRC-32C of `data`."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record as a TFRecord file holds it (what tf.io.TFRecordWriter writes)."""
    length = struct.pack("<Q", len(data))
    return length + _FOOTER.pack(masked_crc(length)) + data + _FOOTER.pack(masked_crc(data))


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as error:
        code = _OPEN_ERRORS.get(error.errno or 0, Code.UNKNOWN)
        raise ServingError(code, f"{path}; {os.strerror(error.errno or 0)}") from None


def read_records(path: str) -> Iterator[bytes]:
    """The records of the TFRecord file `path`, in order, each checked against its CRCs.
    Raises ServingError: TensorFlow's code and message for a file that cannot be opened,
    DATA_LOSS for a truncated or corrupted record."""
    with _open(path) as file:
        size = os.fstat(file.fileno()).st_size
        offset = 0
        while True:
            header = file.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return  # TensorFlow's reader ends here too, even on a partial header
            length, length_crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != length_crc:
                hint = " (Is this even a TFRecord file?)" if offset == 0 else ""
                raise ServingError(Code.DATA_LOSS, f"corrupted record at {offset}{hint}")
            # A length past the end of the file is not read (nor allocated) at all.
            wanted = length + _FOOTER.size
            body = file.read(wanted) if wanted <= size - offset - _HEADER.size else b""
            if len(body) < wanted:
                raise ServingError(
                    Code.DATA_LOSS,
                    f"truncated record at {offset}' failed with Read less bytes than requested",
                )
            data = body[:length]
            if masked_crc(data) != _FOOTER.unpack_from(body, length)[0]:
                raise ServingError(Code.DATA_LOSS, f"corrupted record at {offset + _HEADER.size}")
            yield data
            offset += _HEADER.size + len(body)
