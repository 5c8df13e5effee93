"""
GetObject's failover between an object's copies (L{s3balance.s3.objects}).

An object may have several locations (replicas, on distinct backends).  A
GET tries them in L{read_order}: the readable ones, in the record's order.

  - Before the first byte (L{first_answer}): a location that fails
    (connection error, timeout, 5xx, 404, or an answer of another length) is
    logged and the next one is tried.  When all failed the client hears what
    a single copy would say: 404s everywhere (and the record unchanged) are
    InternalError, a record replaced meanwhile is looked up again
    (L{Replaced}), anything else is 503.  A copy that answered 404 while
    another served is handed to the replica repair (L{report_missing}).
  - Mid-body (L{rest_of_body}): when the backend's body breaks off, the rest
    (the bytes after the last one written to the client) is asked of the
    next location as a range, and used only once its answer is checked to be
    exactly those bytes (L{answers_range}: 206, Content-Range and
    Content-Length).  With no location left, the client connection is cut
    (L{cut_connection}): never a wrong byte, never a short body that looks
    complete.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, cast

from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.backends.backend import BackendError
from s3balance.errors import S3Error

if TYPE_CHECKING:
    from twisted.web.iweb import IResponse

    from s3balance.backends.backend import Backend
    from s3balance.backends.pool import BackendPool
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import Location, ObjectRecord

log = Logger()


class Replaced(Exception):
    """The backend no longer has the copy a record named, and the record changed."""


def read_order(pool: BackendPool, locations: Sequence[Location]) -> list[Location]:
    """
    The locations of an object a read may use, in the order to try them:
    those whose backend is readable (L{BackendPool.readable}: configured, up,
    under its read limit), in the record's order, the primary first.  The
    others are left out: a backend marked down is not waited for, and one
    over its read limit must not be read.
    """
    return [location for location in locations if pool.readable(location.backend)]


async def first_answer(
    gateway: GatewayLike,
    request: S3Request,
    call: S3Call,
    record: ObjectRecord,
    candidates: Sequence[Location],
    byte_range: Optional[tuple[int, int]],
    expected: int,
) -> tuple[int, IResponse]:
    """
    GET the object (or C{byte_range} of it) from the first of C{candidates}
    that answers with a body of C{expected} bytes (or of unknown length).

    @return: the index in C{candidates} of the location that answered, and
        its response (the body not read yet).
    @raise S3Error: when every location failed, what the client hears.
    @raise Replaced: when one had no copy and the record changed meanwhile.
    """
    missing: list[Location] = []
    for index, location in enumerate(candidates):
        backend = cast("Backend", gateway.pool.get(location.backend))  # readable: in the pool
        more = index + 1 < len(candidates)
        try:
            response = await backend.get_object(location.real_key, byte_range)
        except BackendError as error:
            if request.gone:
                # The client left and cancelled the request (see Gateway.handle):
                # no backend failure, nobody to answer.
                raise CancelledError() from None
            (log.warn if more else log.error)(
                "GET {bucket}/{key} from {backend} failed: {error}" + ("; trying another copy" if more else ""),
                bucket=call.bucket,
                key=call.key,
                backend=backend.name,
                error=str(error),
            )
            if error.status == 404:
                missing.append(location)
            count_failover(gateway, backend.name, "before_body", more)
            continue
        if not isinstance(response.length, int) or response.length == expected:
            if missing:
                report_missing(gateway, record, missing)
            return index, response
        # Another object's bytes, or a Range ignored: nothing of it may reach the client.
        response.deliverBody(Discard())
        count_failover(gateway, backend.name, "before_body", more)
        (log.warn if more else log.error)(
            "GET {bucket}/{key} from {backend} failed: it answered {length} bytes, not {expected}",
            bucket=call.bucket,
            key=call.key,
            backend=backend.name,
            length=response.length,
            expected=expected,
        )
    if missing:
        current = await gateway.store.get_object(call.bucket, call.key)
        if current is None or current.locations != record.locations:
            raise Replaced()
        if len(missing) == len(record.locations):
            raise S3Error("InternalError", "The object's data is missing on its backend.")
    raise S3Error("ServiceUnavailable", "The storage backend failed; try again later.")


async def rest_of_body(
    gateway: GatewayLike,
    request: S3Request,
    call: S3Call,
    record: ObjectRecord,
    candidates: Sequence[Location],
    position: int,
    first: int,
    last: int,
) -> Optional[tuple[int, IResponse]]:
    """
    The rest of a body cut short: bytes C{first} to C{last} of the object
    from the first of C{candidates}, from C{position} on, that is still readable
    and answers with exactly those bytes (L{answers_range}).

    @return: the index of that location and its response, or L{None} when
        none did.
    @raise CancelledError: when the client left meanwhile.
    """
    pool = gateway.pool
    for index, location in enumerate(candidates[position:], position):
        backend = pool.get(location.backend)
        if backend is None or not pool.readable(location.backend):
            continue
        try:
            response = await backend.get_object(location.real_key, (first, last))
        except BackendError as error:
            if request.gone:
                raise CancelledError() from None
            log.warn(
                "GET {bucket}/{key}: the rest from {backend} failed: {error}",
                bucket=call.bucket,
                key=call.key,
                backend=backend.name,
                error=str(error),
            )
            continue
        if request.gone:
            response.deliverBody(Discard())
            raise CancelledError()
        if answers_range(response, first, last, record.size):
            return index, response
        response.deliverBody(Discard())
        log.warn(
            "GET {bucket}/{key}: {backend} answered the rest ({first}-{last}) with {code} {range} of {length} bytes",
            bucket=call.bucket,
            key=call.key,
            backend=backend.name,
            first=first,
            last=last,
            code=response.code,
            range=response.headers.getRawHeaders(b"content-range"),
            length=response.length,
        )
    return None


_CONTENT_RANGE = re.compile(rb"bytes\s+(\d+)-(\d+)/(\d+)", re.IGNORECASE)


def answers_range(response: IResponse, first: int, last: int, size: int) -> bool:
    """
    Whether C{response} carries exactly bytes C{first} to C{last} of an
    object of C{size} bytes: a 206 whose one Content-Range says so, with a
    Content-Length of that many bytes.  Anything else (a 200 with the whole
    object, a length left open) can't be checked, and is not used.
    """
    if response.code != 206 or response.length != last - first + 1:
        return False
    ranges = response.headers.getRawHeaders(b"content-range")
    if not ranges or len(ranges) != 1:
        return False
    found = _CONTENT_RANGE.fullmatch(ranges[0].strip())
    return found is not None and tuple(map(int, found.groups())) == (first, last, size)


def report_missing(gateway: GatewayLike, record: ObjectRecord, missing: Sequence[Location]) -> None:
    """Copies whose backend said 404 while another copy served: the replica repair checks them (s3balance.ops.replicate)."""
    replicas = getattr(gateway, "replicas", None)
    if replicas is not None:
        for location in missing:
            replicas.suspect(record, location)


def count_failover(gateway: GatewayLike, backend: str, phase: str, more: bool) -> None:
    """Count a GET leaving C{backend}'s copy for another (when there is another: C{more})."""
    metrics = getattr(gateway, "metrics", None)
    if more and metrics is not None:
        metrics.read_failover(backend, phase)


def cut_connection(request: S3Request) -> None:
    """End a response whose head is out without its whole body: the only honest signal is a cut connection."""
    if not request.gone:
        transport: Any = request.channel.transport
        transport.abortConnection()


class Discard:
    """A protocol that drops a response body nobody wants."""

    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass
