"""
Object Lock on the backends' own copies: defence in depth for a backend
whose real bucket has Object Lock enabled (C{object_lock: true} on the
backend).  s3balance's metadata database is what enforces a version's
retention and legal hold (L{s3balance.s3.object_lock}); a backend marked
so also holds every copy of a locked version under the same retention and
legal hold, so that someone with the backend's keys (and not s3balance's)
cannot destroy it either.

  - L{protect}: the lock of a new copy, set by C{PUT ?retention} and
    C{PUT ?legal-hold} once the backend has confirmed its bytes and before
    the copy is recorded (a write, a copy, a completed multipart upload, a
    replica, a drained or rebalanced copy).  A copy that cannot be locked is
    not recorded: the write fails and its bytes are given up.
  - L{mirror_retention}, L{mirror_legal_hold}: a version's lock changed by
    PutObjectRetention or PutObjectLegalHold, sent to each of its copies.
  - C{Backend.delete_object}: how the deletion worker deletes a real key on
    such a backend.  Its real bucket is versioned (Object Lock needs it): a
    plain DELETE would only hide the bytes behind a delete marker, so every
    version of the key (one, as s3balance writes each real key once, and
    the markers) is deleted by its version id, with
    C{x-amz-bypass-governance-retention} (s3balance's metadata has already
    decided that no version refers to the copy).  A copy whose backend
    retention still runs (COMPLIANCE, or a credential without the bypass
    permission) is refused by the backend: the deletion stays queued and is
    retried until it runs out.

The requests carry C{Content-MD5}, which S3 requires of both
sub-resources.  A backend bucket given a default retention of its own
would lock every copy written there, of buckets without Object Lock too,
and s3balance could then not delete them before it ends: leave it unset.
"""

from __future__ import annotations

import datetime
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any, Optional, Protocol

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed

if TYPE_CHECKING:
    from s3balance.backends.backend import Backend

_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


class Backends(Protocol):
    """The backends by name (a L{s3balance.backends.pool.BackendPool})."""

    def get(self, name: str) -> Optional[Backend]: ...


class CopyLocation(Protocol):
    """Where a copy is: its backend's name and real key (a store C{Location})."""

    @property
    def backend(self) -> str: ...

    @property
    def real_key(self) -> str: ...


def _date(until: datetime.datetime) -> str:
    return until.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _document(root: str, children: list[tuple[str, str]]) -> bytes:
    inner = "".join(f"<{name}>{value}</{name}>" for name, value in children)
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{_NS}">{inner}</{root}>'.encode()


def put_retention(
    backend: Backend,
    real_key: str,
    mode: Optional[str],
    until: Optional[datetime.datetime],
    bypass: bool = False,
) -> Deferred[Any]:
    """Set the retention of C{real_key} (C{mode} None: remove it, which needs C{bypass} for GOVERNANCE)."""
    children = [("Mode", mode), ("RetainUntilDate", _date(until))] if mode is not None and until is not None else []
    return backend.put_control(real_key, "retention=", _document("Retention", children), bypass)


def put_legal_hold(backend: Backend, real_key: str, on: bool) -> Deferred[Any]:
    """Set (or lift) the legal hold of C{real_key}."""
    return backend.put_control(real_key, "legal-hold=", _document("LegalHold", [("Status", "ON" if on else "OFF")]))


def _locked_backends(pool: Backends, locations: Iterable[CopyLocation]) -> list[tuple[Backend, str]]:
    found = []
    for location in locations:
        backend = pool.get(location.backend)
        if backend is not None and backend.config.object_lock:
            found.append((backend, location.real_key))
    return found


def protect(
    pool: Backends,
    locations: Iterable[CopyLocation],
    mode: Optional[str],
    until: Optional[datetime.datetime],
    legal_hold: bool,
) -> Deferred[Any]:
    """
    Lock the copies at C{locations} that are on backends with
    C{object_lock} as their version is (nothing to do for a version without
    retention or legal hold); fails with the first backend's
    L{BackendError} when one cannot be locked.
    """
    if mode is None and not legal_hold:
        return succeed(None)
    return _all([_lock(backend, real_key, mode, until, legal_hold) for backend, real_key in _locked_backends(pool, locations)])


@inlineCallbacks
def _lock(
    backend: Backend, real_key: str, mode: Optional[str], until: Optional[datetime.datetime], legal_hold: bool
) -> Generator[Deferred[Any], Any, None]:
    # One after the other: both change the object's entry (SeaweedFS keeps
    # one of two concurrent changes).
    if mode is not None and until is not None:
        yield put_retention(backend, real_key, mode, until)
    if legal_hold:
        yield put_legal_hold(backend, real_key, True)


def mirror_retention(
    pool: Backends,
    locations: Iterable[CopyLocation],
    mode: Optional[str],
    until: Optional[datetime.datetime],
    bypass: bool,
) -> Deferred[Any]:
    """A version's new retention, on its copies on backends with C{object_lock}."""
    return _all([
        put_retention(backend, real_key, mode, until, bypass)
        for backend, real_key in _locked_backends(pool, locations)
    ])


def mirror_legal_hold(pool: Backends, locations: Iterable[CopyLocation], on: bool) -> Deferred[Any]:
    """A version's new legal hold, on its copies on backends with C{object_lock}."""
    return _all([put_legal_hold(backend, real_key, on) for backend, real_key in _locked_backends(pool, locations)])


def _all(requests: list[Deferred[Any]]) -> Deferred[Any]:
    if not requests:
        return succeed(None)
    return gatherResults(requests, consumeErrors=True).addErrback(lambda failure: failure.value.subFailure)
