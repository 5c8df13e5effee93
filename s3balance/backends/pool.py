"""
The set of backends the gateway may use, with their health, usage and
in-flight reservations, and placement of new objects on them.

Mutation of this state lives here and nowhere else.

The reservations here are this process's only: placement's quick
pre-filter.  What decides is the store: a write's intent reserves its bytes
in the database, checked against max_size with every daemon's reservations
in the same transaction (L{s3balance.store.objects.check_capacity}), and a
refusal (BackendFull) sends placement on to the next backend
(L{s3balance.s3.writes.place_write}).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

from twisted.logger import Logger

from s3balance.backends.backend import Backend, BackendError
from s3balance.backends.client import HTTPClient
from s3balance.backends.health import HealthState
from s3balance.backends.operations import OperationCounter
from s3balance.config.schema import Config
from s3balance.placement.interfaces import BackendView, IStrategy, PlacementContext

if TYPE_CHECKING:
    from s3balance.store.interfaces import DrainRecord

log = Logger()

# Requests that store bytes: PUT object, UploadPart, CopyObject and
# UploadPartCopy, CreateMultipartUpload and CompleteMultipartUpload.
_WRITE_METHODS = frozenset({"PUT", "POST"})


class Reservation:
    """Bytes promised to an upload in flight; released when it ends either way."""

    def __init__(self, pool: BackendPool, backend: str, size: int) -> None:
        self._pool = pool
        self.backend = backend
        self.size = size
        self._released = False

    def grow(self, size: int) -> None:
        """Reserve C{size} more bytes (an upload of unknown length, part by part)."""
        if not self._released:
            self.size += size
            self._pool._reserved[self.backend] = self._pool._reserved.get(self.backend, 0) + size

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._reserved[self.backend] = self._pool._reserved.get(self.backend, 0) - self.size


class BackendPool:
    def __init__(self, backends: Iterable[Backend], unhealthy_threshold: int = 3, healthy_threshold: int = 2) -> None:
        self._backends: dict[str, Backend] = {}
        self._health: dict[str, HealthState] = {}
        self._usage: dict[str, tuple[int, int]] = {}
        self._reserved: dict[str, int] = {}
        self.unhealthy_threshold = unhealthy_threshold
        self.healthy_threshold = healthy_threshold
        self.counter: Optional[OperationCounter] = None  # when operation limits are tracked
        self.metrics: Any = None
        self.backend_timeout = 60.0
        # Backends an operator disabled at run time (admin API): no new objects.
        self.disabled: set[str] = set()
        # The drains (draining, paused or done: s3balance.ops.drain) by backend,
        # as the store last said: no new objects there; their objects still read.
        self.drains: dict[str, DrainRecord] = {}
        self.replace(backends)

    # -- membership ---------------------------------------------------------

    def replace(self, backends: Iterable[Backend]) -> None:
        """Swap in a new set of backends (a reload); health of kept ones survives."""
        new = {backend.name: backend for backend in backends}
        for name, backend in new.items():
            if name not in self._health:
                self._health[name] = HealthState(self.unhealthy_threshold, self.healthy_threshold)
            if self._observe not in backend.observers:
                backend.observers.append(self._observe)
            backend.counter = self.counter
            backend.timeout = self.backend_timeout
        self._backends = new

    def set_backend_timeout(self, seconds: float) -> None:
        self.backend_timeout = seconds
        for backend in self._backends.values():
            backend.timeout = seconds

    def set_counter(self, counter: Optional[OperationCounter]) -> None:
        self.counter = counter
        for backend in self._backends.values():
            backend.counter = counter

    def names(self) -> list[str]:
        return sorted(self._backends)

    def get(self, name: str) -> Optional[Backend]:
        return self._backends.get(name)

    def health(self, name: str) -> HealthState:
        state = self._health.get(name)
        if state is None:
            state = self._health[name] = HealthState(self.unhealthy_threshold, self.healthy_threshold)
        return state

    def is_up(self, name: str) -> bool:
        return name in self._backends and self.health(name).up

    def readable(self, name: str) -> bool:
        """Up, and under its monthly class B (read) limit."""
        if not self.is_up(name):
            return False
        return self.counter is None or not self.counter.over_limit(self._backends[name].config, "B")

    def writable(self, name: str) -> bool:
        """
        Enabled (in config and at run time), not drained, up, not read-only
        after write errors, and under its monthly class A limit.
        """
        backend = self._backends.get(name)
        if backend is None or not backend.config.enabled or name in self.disabled or name in self.drains:
            return False
        state = self.health(name)
        if not state.up or not state.writable:
            return False
        return self.counter is None or not self.counter.over_limit(backend.config, "A")

    # -- usage --------------------------------------------------------------

    def set_usage(self, name: str, used_bytes: int, objects: int) -> None:
        self._usage[name] = (used_bytes, objects)

    def add_usage(self, name: str, delta_bytes: int, delta_objects: int) -> None:
        used, objects = self._usage.get(name, (0, 0))
        self._usage[name] = (max(0, used + delta_bytes), max(0, objects + delta_objects))

    def usage(self, name: str) -> tuple[int, int]:
        return self._usage.get(name, (0, 0))

    def reserved(self, name: str) -> int:
        return self._reserved.get(name, 0)

    # -- placement ----------------------------------------------------------

    def view(self, name: str) -> BackendView:
        backend = self._backends[name]
        return BackendView(
            name=name,
            weight=backend.config.weight,
            max_size=backend.config.max_size,
            used_bytes=self.usage(name)[0],
            reserved_bytes=self.reserved(name),
        )

    def candidates(self, size: Optional[int], exclude: Iterable[str] = ()) -> list[BackendView]:
        """Backends that are enabled, up, not excluded and have room for C{size} bytes."""
        excluded = set(exclude)
        views = []
        for name in self.names():
            if name in excluded or not self.writable(name):
                continue
            view = self.view(name)
            if view.max_size is not None and view.free_bytes is not None and view.free_bytes < (size or 0):
                continue
            views.append(view)
        return views

    def all_full(self, size: Optional[int], exclude: Iterable[str] = ()) -> bool:
        """True when some backend is usable but none has room (as opposed to none usable)."""
        excluded = set(exclude)
        usable = [name for name in self.names() if name not in excluded and self.writable(name)]
        return bool(usable) and not self.candidates(size, exclude)

    def reserve(self, name: str, size: int) -> Reservation:
        """Reserve room on a backend chosen by the caller (e.g. a copy's source backend)."""
        self._reserved[name] = self._reserved.get(name, 0) + size
        return Reservation(self, name, size)

    def place(
        self, strategy: IStrategy, context: PlacementContext, exclude: Iterable[str] = (), reserve: Optional[int] = None
    ) -> Optional[Reservation]:
        """
        Choose a backend for a new object and reserve its size there (or
        C{reserve} bytes: an upload of unknown length reserves its first part).
        """
        candidates = self.candidates(context.size, exclude)
        if not candidates:
            return None
        chosen = strategy.choose(context, candidates)
        if chosen is None:
            return None
        if self.metrics is not None:
            self.metrics.placement(strategy.name, chosen.name)
        return self.reserve(chosen.name, (context.size or 0) if reserve is None else reserve)

    # -- passive health -----------------------------------------------------

    def _observe(self, backend: Backend, method: str, result: Any, elapsed: float) -> None:
        """
        Called with every backend request's outcome: the response (its head;
        the body is not read yet) or the Failure of the connection.

        A failed connection says the backend is down, whatever the request.
        A 5xx answer to a read says so too; a 5xx answer to a write does not
        (see L{_observe_write}): the server answered, and may well still
        serve the objects it holds.
        """
        state = self._health.get(backend.name)
        if state is None:
            return
        error = None
        if hasattr(result, "check"):  # a Failure
            if result.check(BackendError) and not result.value.is_outage:
                return
            error = f"{type(result.value).__name__}: {result.getErrorMessage()}"[:300]
        elif method in _WRITE_METHODS:
            self._observe_write(backend.name, state, method, getattr(result, "code", 200))
            return
        elif getattr(result, "code", 200) >= 500:
            error = f"HTTP {result.code} on {method}"
        if error is not None and state.record_failure(error):
            log.warn("backend {backend} marked down after request errors: {error}", backend=backend.name, error=error)

    def _observe_write(self, name: str, state: HealthState, method: str, code: int) -> None:
        """
        Writes feed the read-only state, not up/down.  A 503 is throttling
        (S3's SlowDown and ServiceUnavailable both mean "reduce your request
        rate"), not a broken backend: it counts neither way.  4xx answers are
        the request's fault.  While the backend is read-only only the health
        monitor's write probe judges its writes: the probe's own requests come
        through here too and would be counted twice, and a real write that
        still reaches it (a part of an upload it already holds) proves little
        either way.
        """
        if not state.writable or code == 503:
            return
        if code >= 500:
            error = f"HTTP {code} on {method}"
            if state.record_write_failure(error):
                log.warn("backend {backend} is read-only after write errors: {error}", backend=name, error=error)
        elif code < 400:
            state.record_write_success()


def make_backends(config: Config, http: HTTPClient, reactor: Any) -> list[Backend]:
    """One L{Backend} for each real bucket of C{config} (a L{s3balance.config.Config})."""
    return [Backend(backend, http, reactor) for backend in config.backends]
