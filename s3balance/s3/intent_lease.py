"""
Keeping a write intent's lease alive while its write runs.

A write intent (L{s3balance.store.interfaces.IMetadataStore.begin_write})
covers a backend object that no row refers to yet; once its lease has run
out by the database's clock, the cleaner queues that object for deletion.
Every write that holds an intent (PutObject, a PUT of unknown length,
UploadPart, CopyObject) renews it with an L{IntentLease} for as long as it
runs, and settles it with L{give_up_write} when it fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.backends.backend import BackendError
from s3balance.store.interfaces import WriteIntentExpired

if TYPE_CHECKING:
    from s3balance.s3.handler_types import GatewayLike
    from s3balance.store.interfaces import IMetadataStore

log = Logger()

# The lease of an upload's or a copy's write intent, renewed every third of it.
INTENT_LEASE = 3600.0


class IntentLease:
    """
    Renews write intent C{intent_id} to C{lease} seconds every C{lease / 3}
    seconds, from L{start} until L{stop}.

    A renewal that fails (the database unavailable for a moment) is logged
    and tried again after L{retry_delay}; it never ends the renewals, and
    the lease still has two thirds of its length to run.  Only
    L{WriteIntentExpired} ends them: the intent is gone (its lease ran out,
    or the write already committed or was abandoned), and its write can't
    commit any more.  One renewal at a time; L{stop} cancels the next one
    (one under way finishes on its own, harmlessly).

    States: C{running} from L{start} to L{stop} or the intent's loss
    (C{lost} is then True).
    """

    def __init__(self, store: IMetadataStore, intent_id: int, lease: float, clock: Any) -> None:
        self.store = store
        self.intent_id = intent_id
        self.lease = lease
        self.clock = clock
        self.period = lease / 3
        self.retry_delay = min(lease / 12, 60.0)
        self.running = False
        self.lost = False
        self.failures = 0
        self._call: Optional[Any] = None

    def start(self) -> IntentLease:
        self.running = True
        self._schedule(self.period)
        return self

    def stop(self) -> None:
        self.running = False
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _schedule(self, delay: float) -> None:
        if self.running:
            self._call = self.clock.callLater(delay, self._renew)

    def _renew(self) -> None:
        self._call = None
        maybeDeferred(self.store.renew_write, self.intent_id, self.lease).addCallbacks(self._renewed, self._failed)

    def _renewed(self, _: object) -> None:
        self.failures = 0
        self._schedule(self.period)

    def _failed(self, failure: Failure) -> None:
        if failure.check(WriteIntentExpired):
            if self.running:
                log.warn("write intent {id} is gone; its lease is no longer renewed", id=self.intent_id)
            self.running = False
            self.lost = True
            return
        self.failures += 1
        log.warn(
            "renewing the lease of write intent {id} failed ({error}); trying again in {delay:g}s",
            id=self.intent_id,
            error=failure.getErrorMessage(),
            delay=self.retry_delay,
        )
        self._schedule(self.retry_delay)


# A backend that had a whole body and did not answer in time may still store
# the object: its real key is deleted this many backend timeouts later.
LATE_COMPLETION_TIMEOUTS = 5


async def give_up_write(
    gateway: GatewayLike, intent_id: int, error: BaseException, backend_object_may_exist: bool, late: bool = False
) -> None:
    """
    Abandon the write intent of a write (or one attempt of it) that failed
    with C{error}; the real key is queued for deletion when
    C{backend_object_may_exist}.

    A backend that had the whole body and did not answer in time
    (L{BackendError.timed_out}) may store the object later still.  Its
    intent is then kept, its lease set to L{LATE_COMPLETION_TIMEOUTS} times
    C{balancer.backend_timeout} and no longer renewed: the cleaner deletes
    the real key once that has run out by the database's clock, a late
    completion included, and until then the key is referenced, so nothing
    deletes it early (nor does any object row ever refer to it).  So is a
    backend whose request was cut after it had the whole body (C{late}: the
    other copies of a replicated write failed first).
    """
    store = gateway.store
    if late or (isinstance(error, BackendError) and error.timed_out):
        window = LATE_COMPLETION_TIMEOUTS * gateway.config.balancer.backend_timeout
        try:
            await store.renew_write(intent_id, window)
            return
        except Exception as failure:
            log.warn("could not keep write intent {id} ({error}); abandoning it", id=intent_id, error=str(failure))
    await store.abandon_write(intent_id, backend_object_may_exist)
    gateway.kick_deleter()
