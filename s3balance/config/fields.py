"""Reading one mapping of the YAML key by key, with the value checks every section shares."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from s3balance.config.error import ConfigError
from s3balance.config.units import parse_duration, parse_size

# ---------------------------------------------------------------------------
# Reading the mapping
# ---------------------------------------------------------------------------

T = TypeVar("T")


class _Section:
    """One mapping of the YAML, read key by key; remembers which keys were used."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or '<top>'}: expected a mapping, got {_describe(data)}")
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(f"{self._join(path, str(key))}: keys must be strings")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    @staticmethod
    def _join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def key_path(self, key: str) -> str:
        return self._join(self.path, key)

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def get(self, key: str, convert: Callable[[Any], T], default: T, *, zero_default: bool = False) -> T:
        """``convert(value)``; ``default`` when missing or null (or falsy when ``zero_default``)."""
        value = self.raw(key)
        if value is None:
            return default
        try:
            result = convert(value)
        except ValueError as error:
            raise ConfigError(f"{self.key_path(key)}: {error}") from None
        if zero_default and not result:
            return default
        return result

    def ignore(self, *keys: str) -> None:
        self.used.update(keys)

    def check_unknown(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise ConfigError(f"{self.key_path(key)}: unknown key")


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _str(value: object) -> str:
    # YAML turns an unquoted 12345 into an int; Go reads it into a string field.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {_describe(value)}")


def _secret(value: object) -> str:
    try:
        return _str(value)
    except ValueError:
        raise ValueError("expected a string") from None


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"expected an integer, got {_describe(value)}")


def _non_negative_int(value: object) -> int:
    number = _int(value)
    if number < 0:
        raise ValueError(f"expected a non-negative integer, got {number}")
    return number


def _positive_int(value: object) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError(f"expected a positive integer, got {number}")
    return number


def _positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"expected a number above zero, got {_describe(value)}")
    return float(value)


def _port(value: object) -> int:
    number = _int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"expected a port number (0-65535), got {number}")
    return number


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {_describe(value)}")


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration greater than zero, got {value!r}")
    return seconds


def _size(value: object) -> int | None:
    return parse_size(value)


def _positive_size(value: object) -> int:
    size = parse_size(value)
    if not size:
        raise ValueError("expected a size above zero")
    return size


def _choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        text = _str(value).lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return convert


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {_describe(value)}")
    items = []
    for index, item in enumerate(value):
        try:
            items.append(_str(item))
        except ValueError as error:
            raise ValueError(f"item {index}: {error}") from None
    return tuple(items)


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _check_s3_bucket_name(name: str) -> str | None:
    """The reason ``name`` is not a valid S3 bucket name, or None."""
    if not _BUCKET_NAME.fullmatch(name):
        return (
            "not a valid S3 bucket name (3-63 characters: lower-case letters, digits, "
            "'.' and '-', starting and ending with a letter or digit)"
        )
    if ".." in name or ".-" in name or "-." in name:
        return "not a valid S3 bucket name (no '..', '.-' or '-.')"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return None
    return "not a valid S3 bucket name (looks like an IP address)"
