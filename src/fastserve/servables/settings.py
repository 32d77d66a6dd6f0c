"""The YAML files a kind reads beside its model (servable.yaml, transform.yaml, pipeline.yaml).

A kind takes a file's fields one by one through `Settings`, which checks each value's type
and range and words every problem as a load error (INVALID_ARGUMENT) naming the file and the
place in it, so that an operator can fix the file from the version's status alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from typing import Any, NoReturn

import yaml

from fastserve.errors import Code, ServingError, invalid_argument

_MISSING: Any = object()


# The options file of the kinds that take a few flat options (onnx, tflite, the estimators).
OPTIONS_FILE = "servable.yaml"


def servable_options(path: str, known: Collection[str]) -> tuple[str, dict[str, Any]]:
    """The options in the version folder's servable.yaml ({} without the file, or with an
    empty one) and the file's path, for messages. A file that is not YAML or not a mapping,
    or that names an option not in `known`, fails the load (INVALID_ARGUMENT) naming the
    file; checking each value is the kind's."""
    file = os.path.join(path, OPTIONS_FILE)
    if not os.path.exists(file):
        return file, {}
    try:
        with open(file, encoding="utf-8") as stream:
            loaded = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError) as error:
        raise invalid_argument(f"Cannot read {file}: {error}") from None
    if loaded is None:
        return file, {}
    if not isinstance(loaded, dict):
        raise invalid_argument(f"{file}: expected a mapping of options ({', '.join(known)})")
    for key in loaded:
        if key not in known:
            raise invalid_argument(f"{file}: unknown option {key!r} (known: {', '.join(known)})")
    return file, loaded


def whole_number(file: str, key: str, value: Any, minimum: int) -> int:
    """`value` of option `key`, which must be a whole number >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid_argument(
            f"{file}: {key}: expected a whole number >= {minimum}, not {value!r}"
        )
    return value


def read_yaml(path: str, file_name: str, *, required: bool) -> Settings | None:
    """The mapping in `path/file_name` (None when the file is absent and not `required`)."""
    file = os.path.join(path, file_name)
    if not os.path.exists(file):
        if required:
            raise ServingError(Code.NOT_FOUND, f"Could not find {file_name} in {path}")
        return None
    try:
        with open(file, encoding="utf-8") as stream:
            loaded = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise invalid_argument(f"Cannot read {file}: {error}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise invalid_argument(f"{file}: expected a mapping, not {type(loaded).__name__}")
    return Settings(loaded, file)


class Settings:
    """A mapping from a YAML file, read field by field. `where` names it in messages ("/m/1/
    servable.yaml", "transform.yaml: op 2 (clip)"). After taking every field it knows, a kind
    calls finish(), which refuses any field left over (a typo must not pass silently)."""

    def __init__(self, values: Mapping[str, Any], where: str) -> None:
        self._values = dict(values)
        self.where = where

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def fail(self, message: str) -> NoReturn:
        raise self.error(message)

    def error(self, message: str) -> ServingError:
        return invalid_argument(f"{self.where}: {message}")

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        """The value of `key` as YAML gave it; a missing key without a default is an error."""
        if key in self._values:
            return self._values.pop(key)
        if default is _MISSING:
            self.fail(f"{key} is required")
        return default

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None) -> Any:
        if key not in self._values and default is not _MISSING:
            return default
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{key}: expected a whole number, not {value!r}")
        if minimum is not None and value < minimum:
            self.fail(f"{key}: expected a whole number >= {minimum}, not {value}")
        return value

    def number(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self._values and default is not _MISSING:
            return default
        value = self.raw(key)
        return self._number(key, value)

    def _number(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            self.fail(f"{key}: expected a number, not {value!r}")
        return float(value)

    def numbers(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self._values and default is not _MISSING:
            return default
        value = self.raw(key)
        if not isinstance(value, list):
            self.fail(f"{key}: expected a list of numbers, not {value!r}")
        return [self._number(f"{key}[{index}]", item) for index, item in enumerate(value)]

    def number_or_numbers(self, key: str) -> float | list[float]:
        """A number, or a non-empty list of numbers."""
        value = self.raw(key)
        if isinstance(value, list):
            if not value:
                self.fail(f"{key}: expected a number or a non-empty list of numbers")
            return [self._number(f"{key}[{index}]", item) for index, item in enumerate(value)]
        return self._number(key, value)

    def string(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self._values and default is not _MISSING:
            return default
        value = self.raw(key)
        if not isinstance(value, str):
            self.fail(f"{key}: expected a string, not {value!r}")
        return value

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self._values and default is not _MISSING:
            return default
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(f"{key}: expected a list of strings, not {value!r}")
        return list(value)

    def mapping(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self._values and default is not _MISSING:
            return default
        value = self.raw(key)
        if not isinstance(value, dict):
            self.fail(f"{key}: expected a mapping, not {value!r}")
        return value

    def finish(self) -> None:
        """Refuses the fields nobody took."""
        if self._values:
            self.fail(f"unknown field {', '.join(repr(k) for k in self._values)}")
