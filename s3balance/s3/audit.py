"""
The audit log's lines: one JSON object per S3 request (and per admin API
request), built when the request ends.

L{AuditTrail} is what the gateway holds (C{gateway.audit}, None when the
audit log is off): L{AuditTrail.track} is called with every request as its
headers arrive (L{s3balance.s3.gateway.Gateway.track}, where the metrics
start counting it too) and hands the finished line to a sink, the
non-blocking writer of L{s3balance.daemon.audit_file}.

A line carries only fields picked one by one from what the gateway computed
(never a header or query parameter copied whole, except the User-Agent), so
no credential secret, signature, C{Authorization} header or presigned query
value can reach it:

    time         when the request headers arrived, ISO 8601 UTC, milliseconds
    request_id   the x-amz-request-id answered
    key_id       the access key id of the verified credential; null when
                 anonymous or when authentication failed
    account      the account id of that credential (null with key_id)
    operation    the routed S3 operation (GetObject, ...); "Admin" for the
                 admin API; null when the request could not be routed
    method       the HTTP method
    bucket, key  the virtual bucket and object key addressed (or null)
    path         admin API requests only: the path, without the query
    status       the HTTP status answered; 499 when the client left before
                 any answer was sent
    error_code   the S3 error code answered, or null
    complete     false when the connection ended before the answer was
                 complete (the client left, or the answer was cut)
    bytes_in     request body bytes received
    bytes_out    response body bytes sent
    duration_ms  from the headers to the end of the answer (to the
                 connection's close for an answer sent before the body)
    client       the client's address (the TCP peer: X-Forwarded-For is
                 not trusted)
    user_agent   the User-Agent, cut to L{MAX_USER_AGENT} characters

Requests to C{/health}, C{/metrics} and C{/status} are not logged: probes
and scrapes would drown the log and change nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Optional

from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["MAX_USER_AGENT", "AuditTrail", "audit_record", "format_line", "iso_time"]

log = Logger()

MAX_USER_AGENT = 256

# The status of an answer nobody received: the client left before any byte
# of it was sent (nginx's "client closed request").
CLIENT_GONE = 499


def iso_time(seconds: float) -> str:
    """C{seconds} since the epoch as ISO 8601 UTC with milliseconds: C{2026-12-04T07:25:07.123Z}."""
    millis = int(seconds * 1000)
    whole, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def _admin_path(request: Any) -> Optional[str]:
    """The path of an admin API request, None for any other request to our own paths."""
    path = request.uri.split(b"?", 1)[0]
    if path == b"/admin" or path.startswith(b"/admin/"):
        return path.decode("utf-8", "replace")
    return None


def audit_record(
    request: Any, started: float, duration: float, client: Optional[str], complete: bool
) -> Optional[dict[str, Any]]:
    """
    The audit fields of C{request} (an L{s3balance.s3.request.S3Request}),
    once it ended; None for a request not audited (C{/health}, C{/metrics},
    C{/status}).  C{started} is the wall-clock time of its headers,
    C{duration} seconds until its end, C{complete} whether the answer was
    sent whole.
    """
    record: dict[str, Any] = {"time": iso_time(started), "request_id": request.request_id}
    admin_path = None
    if request.own_resource is not None:
        admin_path = _admin_path(request)
        if admin_path is None:
            return None
    call = request.call
    credential = call.credential if call is not None else None
    record["key_id"] = credential.access_key if credential is not None else None
    record["account"] = credential.account if credential is not None else None
    if admin_path is not None:
        record["operation"] = "Admin"
    else:
        record["operation"] = call.operation if call is not None else request.operation
    record["method"] = request.method.decode("latin-1")
    target = call.target if call is not None else request.target
    if admin_path is not None:
        record["bucket"] = record["key"] = None
        record["path"] = admin_path
    else:
        record["bucket"] = target.bucket if target is not None else None
        record["key"] = target.key if target is not None else None
    status = request.code
    if not complete and not request.startedWriting:
        status = CLIENT_GONE
    record["status"] = status
    record["error_code"] = request.error_code
    record["complete"] = complete
    record["bytes_in"] = request.bytes_received
    record["bytes_out"] = request.sentLength
    record["duration_ms"] = round(max(0.0, duration) * 1000, 3)
    record["client"] = client
    agent = request.requestHeaders.getRawHeaders(b"user-agent")
    record["user_agent"] = agent[0].decode("latin-1")[:MAX_USER_AGENT] if agent else None
    return record


def format_line(record: dict[str, Any]) -> bytes:
    """One line of JSON (ASCII: a key's control characters and non-ASCII letters are escaped), newline ended."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


class AuditTrail:
    """
    Follows requests from their headers to their end and hands each one's
    line to C{sink} (which must not block).

    @param clock: a monotonic clock for durations.
    @param wall: the wall clock for the C{time} field.
    """

    def __init__(
        self,
        sink: Callable[[bytes], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.clock = clock
        self.wall = wall

    def track(self, request: Any) -> None:
        """Write C{request}'s line when it ends (answered, or its connection lost)."""
        request.notifyFinish().addBoth(self._ended, request, self.wall(), self.clock())

    def _ended(self, result: object, request: Any, started: float, since: float) -> None:
        # The connection was lost before the answer was complete, unless the
        # answer went out whole before the body (then the close is ours).
        complete = not isinstance(result, Failure) or bool(request.answered_early)
        client = getattr(request.client, "host", None)
        try:
            record = audit_record(request, started, self.clock() - since, client, complete)
        except Exception:
            log.failure("audit line of request {id}", id=getattr(request, "request_id", "?"))
            return
        if record is not None:
            self.sink(format_line(record))
