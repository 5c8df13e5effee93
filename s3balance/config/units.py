"""Durations and sizes as the Go configuration writes them (``1m30s``, ``10GiB``)."""

from __future__ import annotations

import math
import re

# ---------------------------------------------------------------------------
# Scalars: durations and sizes
# ---------------------------------------------------------------------------

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)")


def parse_duration(value: object) -> float:
    """Seconds from a Go duration (``"1m30s"``, ``"500ms"``) or a number of seconds.

    Raises ValueError with the problem (no key path) on bad input.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        else:
            sign = -1.0 if text.startswith("-") else 1.0
            body = text.lstrip("+-")
            pos, total = 0, 0.0
            while pos < len(body):
                match = _DURATION_PART.match(body, pos)
                if match is None:
                    break
                total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
            if not body or pos != len(body):
                raise ValueError(f"cannot parse {value!r} as a duration")
            seconds = sign * total
    else:
        raise ValueError(f"expected a duration, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a non-negative duration")
    return seconds


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)")


def parse_size(value: object) -> int | None:
    """Bytes from ``"100GB"``, ``"5 GiB"``, ``"1.5GB"``, ``"512"`` or an integer.

    Units are binary multiples, as in Go s3-balance (``1KB == 1024``).  An empty
    value or 0 means "no limit" and gives None.  Raises ValueError on bad input.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float):
        size = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        match = _SIZE.fullmatch(text)
        if match is None or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"cannot parse {value!r} as a size")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    else:
        raise ValueError(f"expected a size, got {value!r}")
    if size < 0:
        raise ValueError(f"{value!r} is not a non-negative size")
    return size or None


def parse_rate(value: object) -> int:
    """Bytes per second from ``"50MB/s"``, ``"50MB"`` or an integer (binary units, as sizes); 0 or empty: unlimited."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.lower().endswith("/s"):
        text = text[:-2].strip()
        if not text:
            raise ValueError(f"cannot parse {value!r} as a rate")
    try:
        return parse_size(text) or 0
    except ValueError:
        raise ValueError(f"cannot parse {value!r} as a rate (bytes per second, e.g. 50MB/s)") from None


def format_size(amount: float) -> str:
    """Bytes for people: C{512 B}, C{1.5 MiB} (binary units, one decimal)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")
