"""
Verification of the integrity checks a client attaches to a request body.

L{PayloadVerifier} is fed the decoded body as it streams and, at the end,
compares what it computed with what the client announced: C{Content-MD5},
a hex C{x-amz-content-sha256}, and the flexible checksums
C{x-amz-checksum-<algorithm>} sent as a header or as an aws-chunked trailer
(named by C{x-amz-trailer}).  Only the digests somebody asked for are
computed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from s3balance.errors import S3Error

if TYPE_CHECKING:
    from s3balance.auth.sigv4 import AuthContext

CHECKSUM_HEADER_PREFIX = "x-amz-checksum-"

# Headers that share the prefix but do not carry a checksum value.
_NOT_CHECKSUMS = frozenset(["x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-checksum-mode"])


class _Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


# -- CRC implementations -------------------------------------------------------


class _TableCrc:
    """
    A reflected CRC of up to 64 bits, computed eight bytes at a time
    ("slicing-by-8").  Only a fallback for when no C implementation is
    importable; it is pure Python and correspondingly slow.
    """

    _tables: dict[int, tuple[list[int], ...]] = {}

    def __init__(self, poly: int, width: int) -> None:
        self._width = width
        self._mask = (1 << width) - 1
        self._crc = self._mask
        tables = self._tables.get(poly)
        if tables is None:
            tables = self._tables[poly] = _slicing_tables(poly)
        self._t = tables

    def update(self, data: bytes | memoryview, /) -> None:
        t0, t1, t2, t3, t4, t5, t6, t7 = self._t
        crc = self._crc
        view = memoryview(data).cast("B")
        whole = len(view) - len(view) % 8
        for (word,) in struct.iter_unpack("<Q", view[:whole]):
            x = crc ^ word
            crc = (
                t7[x & 0xFF]
                ^ t6[(x >> 8) & 0xFF]
                ^ t5[(x >> 16) & 0xFF]
                ^ t4[(x >> 24) & 0xFF]
                ^ t3[(x >> 32) & 0xFF]
                ^ t2[(x >> 40) & 0xFF]
                ^ t1[(x >> 48) & 0xFF]
                ^ t0[x >> 56]
            )
        for byte in view[whole:]:
            crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        self._crc = crc

    def digest(self) -> bytes:
        return (self._crc ^ self._mask).to_bytes(self._width // 8, "big")


def _slicing_tables(poly: int) -> tuple[list[int], ...]:
    t0 = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        t0.append(crc)
    tables = [t0]
    for _ in range(7):
        prev = tables[-1]
        tables.append([(c >> 8) ^ t0[c & 0xFF] for c in prev])
    return tuple(tables)


_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
_CRC64NVME_POLY = 0x9A6C9329AC4BC9B5  # 0xad93d23594c93659 reflected


class _Crc32:
    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


class _IncrementalCrc:
    """A CRC given by a C function C{f(data, previous) -> int}."""

    def __init__(self, function: Callable[[bytes, int], int], size: int) -> None:
        self._function = function
        self._size = size
        self._crc = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._crc = self._function(data, self._crc)  # type: ignore[arg-type]

    def digest(self) -> bytes:
        return self._crc.to_bytes(self._size, "big")


def _crc32c_factory() -> Callable[[], _Digest]:
    try:
        import crc32c
    except ImportError:
        pass
    else:
        return lambda: _IncrementalCrc(crc32c.crc32c, 4)
    try:
        from awscrt import checksums  # type: ignore[import-untyped]
    except ImportError:
        return lambda: _TableCrc(_CRC32C_POLY, 32)
    return lambda: _IncrementalCrc(checksums.crc32c, 4)


def _crc64nvme_factory() -> Callable[[], _Digest]:
    try:
        from awscrt import checksums
    except ImportError:
        return lambda: _TableCrc(_CRC64NVME_POLY, 64)
    return lambda: _IncrementalCrc(checksums.crc64nvme, 8)


# The flexible checksum algorithms: name -> (digest factory, digest size).
ALGORITHMS: dict[str, tuple[Callable[[], _Digest], int]] = {
    "crc32": (_Crc32, 4),
    "crc32c": (_crc32c_factory(), 4),
    "crc64nvme": (_crc64nvme_factory(), 8),
    "sha1": (hashlib.sha1, 20),
    "sha256": (hashlib.sha256, 32),
}


def new_checksum(algorithm: str) -> _Digest:
    """A fresh incremental digest for a flexible checksum C{algorithm}."""
    return ALGORITHMS[algorithm][0]()


def checksum_b64(algorithm: str, data: bytes) -> str:
    """The base64 checksum of C{data}, as sent in C{x-amz-checksum-<algorithm>}."""
    digest = new_checksum(algorithm)
    digest.update(data)
    return base64.b64encode(digest.digest()).decode("ascii")


# -- the verifier --------------------------------------------------------------


class PayloadVerifier:
    """
    Verify a request body against the digests its headers announce.

    @param headers: lower-case header names to values as received.
    @param ctx: the L{AuthContext} of the request (its C{content_sha256} is the
        signed hex digest), or C{None} for an anonymous request.
    @raise S3Error: C{InvalidDigest} for a malformed C{Content-MD5},
        C{InvalidRequest} for an unknown checksum algorithm, C{BadDigest} for
        a checksum value that is not a digest of its algorithm.
    """

    def __init__(self, headers: Mapping[str, Sequence[str]], ctx: AuthContext | None) -> None:
        self._digests: dict[str, _Digest] = {}
        self._md5: bytes | None = None
        self._sha256_hex: str | None = None
        self._expected: dict[str, str] = {}
        self._trailers: list[str] = []

        md5 = _first(headers, "content-md5")
        if md5 is not None:
            try:
                self._md5 = base64.b64decode(md5.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise S3Error("InvalidDigest") from None
            if len(self._md5) != 16:
                raise S3Error("InvalidDigest")
            self._digests["md5"] = hashlib.md5(usedforsecurity=False)

        if ctx is not None:
            content_sha256 = ctx.content_sha256
        else:
            content_sha256 = _first(headers, "x-amz-content-sha256")
        if content_sha256 is not None and _is_hex_sha256(content_sha256.strip()):
            self._sha256_hex = content_sha256.strip().lower()
            self._digests["sha256"] = hashlib.sha256()

        for name, values in headers.items():
            if not name.startswith(CHECKSUM_HEADER_PREFIX) or name in _NOT_CHECKSUMS:
                continue
            algorithm = _algorithm(name)
            self._expect(algorithm, _validated(algorithm, values[0] if values else ""))

        trailer = _first(headers, "x-amz-trailer")
        if trailer is not None:
            for name in trailer.split(","):
                name = name.strip().lower()
                if not name:
                    continue
                if not name.startswith(CHECKSUM_HEADER_PREFIX):
                    raise S3Error("InvalidRequest", f"The trailer {name} is not supported.")
                algorithm = _algorithm(name)
                self._expect(algorithm, None)
                self._trailers.append(algorithm)

    def _expect(self, algorithm: str, value: str | None) -> None:
        if self._expected or self._trailers:
            raise S3Error(
                "InvalidRequest",
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            )
        if value is not None:
            self._expected[algorithm] = value
        self._digests.setdefault(algorithm, ALGORITHMS[algorithm][0]())

    @property
    def trailer_names(self) -> list[str]:
        """The trailers the client announced in C{x-amz-trailer}."""
        return [CHECKSUM_HEADER_PREFIX + algorithm for algorithm in self._trailers]

    def update(self, data: bytes | memoryview) -> None:
        """Account for the next piece of the decoded body."""
        for digest in self._digests.values():
            digest.update(data)

    def finish(self, trailers: Mapping[str, str] = {}) -> dict[str, str]:  # noqa: B006
        """
        Compare the computed digests with the announced ones.

        @param trailers: the trailers of an aws-chunked body (lower-case names).
        @return: the verified flexible checksums the client supplied,
            C{{algorithm: base64}}.
        @raise S3Error: C{BadDigest} (also for a malformed trailer),
            C{XAmzContentSHA256Mismatch} or C{InvalidRequest} (an announced
            trailer is missing).
        """
        expected = dict(self._expected)
        for algorithm in self._trailers:
            name = CHECKSUM_HEADER_PREFIX + algorithm
            value = trailers.get(name)
            if value is None:
                raise S3Error(
                    "InvalidRequest",
                    f"The {name} trailer was announced in x-amz-trailer but not sent.",
                )
            expected[algorithm] = _validated(algorithm, value)

        computed = {name: digest.digest() for name, digest in self._digests.items()}
        if self._md5 is not None and computed["md5"] != self._md5:
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
        if self._sha256_hex is not None and computed["sha256"].hex() != self._sha256_hex:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                ClientComputedContentSHA256=self._sha256_hex,
                S3ComputedContentSHA256=computed["sha256"].hex(),
            )
        verified = {}
        for algorithm, value in expected.items():
            actual = base64.b64encode(computed[algorithm]).decode("ascii")
            if actual != value:
                raise S3Error(
                    "BadDigest",
                    f"The {algorithm.upper()} you specified did not match the calculated checksum.",
                )
            verified[algorithm] = value
        return verified


def _algorithm(header_name: str) -> str:
    algorithm = header_name[len(CHECKSUM_HEADER_PREFIX) :]
    if algorithm not in ALGORITHMS:
        raise S3Error(
            "InvalidRequest",
            f"The algorithm type you specified in {header_name} header is invalid.",
        )
    return algorithm


def _validated(algorithm: str, value: str) -> str:
    value = value.strip()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != ALGORITHMS[algorithm][1]:
        # What S3's conformance suite and the backends answer: a value that
        # cannot be the algorithm's digest does not match the data.
        raise S3Error(
            "BadDigest",
            f"Value for {CHECKSUM_HEADER_PREFIX}{algorithm} header is invalid.",
        )
    return base64.b64encode(raw).decode("ascii")


def _is_hex_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def _first(headers: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


__all__ = ["ALGORITHMS", "PayloadVerifier", "checksum_b64", "new_checksum"]
