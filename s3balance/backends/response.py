"""
A backend's answer, as the connection hands it to the caller: the head
parsed in one pass (L{parse_head}) into L{ResponseHeaders}, and the
L{Response} whose body is delivered through C{deliverBody} (see
L{s3balance.backends.client} for the contract).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Sequence
from typing import Any, AnyStr, Optional, TypeVar, overload

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from zope.interface import implementer

_T = TypeVar("_T")

# Body bytes kept for a response nobody has asked to read yet; above this the
# connection is paused until deliverBody.
_UNCLAIMED_LIMIT = 256 * 1024
_NO_BODY_STATUS = frozenset((204, 304))


class BadResponse(Exception):
    """The backend's answer is not HTTP/1.x we can read."""


class ConnectionLike(typing.Protocol):
    """What an answer needs of its L{s3balance.backends.connection.Connection}."""

    # A TCP or TLS transport: also an IPushProducer.
    transport: Any

    def abort(self) -> None: ...


def _lower(name: str | bytes) -> bytes:
    return (name.encode("latin-1") if isinstance(name, str) else name).lower()


class ResponseHeaders(Headers):
    """
    An answer's headers as parsed, names lower-cased: L{Headers}' interface
    without re-encoding and re-sanitising every value of every answer.
    """

    def __init__(self, raw: Optional[dict[bytes, list[bytes]]] = None) -> None:
        self._raw: dict[bytes, list[bytes]] = raw if raw is not None else {}

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._raw!r})"

    def copy(self) -> ResponseHeaders:
        return ResponseHeaders({name: list(values) for name, values in self._raw.items()})

    def hasHeader(self, name: str | bytes) -> bool:
        return _lower(name) in self._raw

    def removeHeader(self, name: str | bytes) -> None:
        self._raw.pop(_lower(name), None)

    def setRawHeaders(self, name: str | bytes, values: Sequence[str | bytes]) -> None:
        self._raw[_lower(name)] = [v.encode("utf-8") if isinstance(v, str) else v for v in values]

    def addRawHeader(self, name: str | bytes, value: str | bytes) -> None:
        self._raw.setdefault(_lower(name), []).append(value.encode("utf-8") if isinstance(value, str) else value)

    @overload
    def getRawHeaders(self, name: AnyStr) -> Sequence[AnyStr] | None: ...

    @overload
    def getRawHeaders(self, name: AnyStr, default: _T) -> Sequence[AnyStr] | _T: ...

    def getRawHeaders(self, name: AnyStr, default: _T | None = None) -> Sequence[AnyStr] | _T | None:
        values = self._raw.get(_lower(name))
        if not values:
            return default
        if isinstance(name, str):
            return [v.decode("utf-8", "replace") for v in values]
        return values

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, Sequence[bytes]]]:
        return iter(self._raw.items())


@implementer(IPushProducer)
class _BodyProducer:
    """
    The connection as seen by a response body's protocol: pausing it pauses
    the socket while the body is being read; once the body ended it does
    nothing, because the connection may already carry another request.
    """

    def __init__(self, connection: ConnectionLike) -> None:
        self._connection: Optional[ConnectionLike] = connection
        self.paused = False

    def pauseProducing(self) -> None:
        if self._connection is not None and not self.paused:
            self.paused = True
            self._connection.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self._connection is not None and self.paused:
            self.paused = False
            self._connection.transport.resumeProducing()

    def stopProducing(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.abort()

    def detach(self) -> None:
        """The body ended: leave the connection as we found it."""
        if self._connection is not None:
            if self.paused:
                self.paused = False
                self._connection.transport.resumeProducing()
            self._connection = None


@implementer(IResponse)
class Response:
    """An answer whose head arrived; the body follows through C{deliverBody}."""

    version: tuple[bytes, int, int]
    previousResponse: Optional[IResponse] = None
    request = None

    def __init__(
        self,
        connection: ConnectionLike,
        version: tuple[bytes, int, int],
        code: int,
        phrase: bytes,
        headers: Headers,
        length: int | str,
    ) -> None:
        self._connection = connection
        self.version = version
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self.length = length
        self._protocol: Optional[Protocol] = None
        self._producer: Optional[_BodyProducer] = None
        self._unclaimed: list[bytes] = []
        self._unclaimed_size = 0
        self._paused_unclaimed = False
        self._end: Optional[Failure] = None

    def setPreviousResponse(self, response: Optional[IResponse]) -> None:
        self.previousResponse = response

    def deliverBody(self, protocol: Protocol) -> None:
        if self._protocol is not None:
            raise RuntimeError("the body of this response is already being delivered")
        self._protocol = protocol
        producer = _BodyProducer(self._connection)
        if self._end is not None:
            producer.detach()
        self._producer = producer
        protocol.makeConnection(producer)
        unclaimed, self._unclaimed = self._unclaimed, []
        for data in unclaimed:
            protocol.dataReceived(data)
        if self._paused_unclaimed:
            self._paused_unclaimed = False
            if self._end is None:
                self._connection.transport.resumeProducing()
        if self._end is not None:
            protocol.connectionLost(self._end)

    # called by the connection
    def _data(self, data: bytes) -> None:
        if self._protocol is not None:
            self._protocol.dataReceived(data)
            return
        self._unclaimed.append(data)
        self._unclaimed_size += len(data)
        if self._unclaimed_size > _UNCLAIMED_LIMIT and not self._paused_unclaimed:
            self._paused_unclaimed = True
            self._connection.transport.pauseProducing()

    def _detach(self) -> None:
        """The body ended: leave the connection unpaused, and let go of it."""
        if self._producer is not None:
            self._producer.detach()
        elif self._paused_unclaimed:
            self._paused_unclaimed = False
            self._connection.transport.resumeProducing()

    def _finish(self, reason: Failure) -> None:
        if self._end is not None:
            return
        self._end = reason
        self._detach()
        if self._protocol is not None:
            self._protocol.connectionLost(reason)


def parse_head(
    block: bytes, method_is_head: bool
) -> tuple[tuple[bytes, int, int], int, bytes, ResponseHeaders, str, int | str, bool]:
    """-> (version, code, phrase, Headers, framing, length, keep_alive)."""
    lines = block.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or len(status[1]) != 3 or not status[1].isdigit():
        raise BadResponse(f"bad status line {lines[0][:100]!r}")
    version = (b"HTTP", 1, 1 if status[0] == b"HTTP/1.1" else 0)
    code = int(status[1])
    phrase = status[2] if len(status) > 2 else b""
    raw: dict[bytes, list[bytes]] = {}
    last: Optional[list[bytes]] = None
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            if last is None:
                raise BadResponse("continuation line before any header")
            last[-1] = last[-1] + b" " + line.strip()
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise BadResponse(f"bad header line {line[:100]!r}")
        last = raw.setdefault(name.lower(), [])
        last.append(value.strip())
    headers = ResponseHeaders(raw)

    keep_alive = version[2] == 1
    for token in b",".join(raw.get(b"connection", ())).split(b","):
        token = token.strip().lower()
        if token == b"close":
            keep_alive = False
        elif token == b"keep-alive" and version[2] == 0:
            keep_alive = True
    if method_is_head or code in _NO_BODY_STATUS or code < 200:
        return version, code, phrase, headers, "length", 0, keep_alive
    encodings = raw.get(b"transfer-encoding")
    if encodings:
        if b",".join(encodings).split(b",")[-1].strip().lower() != b"chunked":
            return version, code, phrase, headers, "close", UNKNOWN_LENGTH, False
        # A Content-Length beside chunked is ignored, and the connection not reused.
        return version, code, phrase, headers, "chunked", UNKNOWN_LENGTH, keep_alive and b"content-length" not in raw
    lengths = raw.get(b"content-length")
    if lengths:
        values = {value.strip() for joined in lengths for value in joined.split(b",")}
        if len(values) != 1:
            raise BadResponse("conflicting Content-Length values")
        value = values.pop()
        if not value.isdigit():
            raise BadResponse(f"bad Content-Length {value[:40]!r}")
        return version, code, phrase, headers, "length", int(value), keep_alive
    return version, code, phrase, headers, "close", UNKNOWN_LENGTH, False


__all__ = ["BadResponse", "Response", "ResponseHeaders", "parse_head"]
