"""
The replica situation for operators: per virtual bucket that wants more
than one copy, how many of its objects have fewer (the C{/status} page and
C{GET /admin/replicas}).

L{ReplicaCensus} runs in every daemon (a L{Repeater}, every C{period}
seconds).  It sweeps each such bucket with the replica repair's own query
(C{store.under_replicated}: pages of object ids, the locations counted per
page) and counts the objects short of copies, where a copy counts as for the
repair (L{ReplicaMaker.counts}: its backend is configured and not down for
longer than C{balancer.replica_repair_after}).  A run looks at no more than
C{budget} objects, so its cost is bounded however large the buckets are: a
big bucket's sweep goes on over several runs, and what is shown is the count
of the last complete sweep (with when it ended), never a partial one.
Buckets with C{replicas: 1} are not swept (there is nothing to be short of
but the only copy, which the scrub and fsck report).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import attr

from s3balance.ops.background import BackgroundMetrics, Repeater
from s3balance.ops.cleanup import OUTAGES
from s3balance.ops.replicate import ReplicaMaker
from s3balance.store.interfaces import Location

if TYPE_CHECKING:
    from s3balance.s3.handler_types import GatewayLike

__all__ = ["BucketCensus", "ReplicaCensus"]


@attr.s(frozen=True, auto_attribs=True)
class BucketCensus:
    """One bucket's last complete sweep: the copies wanted, the objects short of them, when it ended."""

    bucket: str
    replicas: int
    under_replicated: int
    swept_at: float

    def document(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "replicas": self.replicas,
            "under_replicated": self.under_replicated,
            "as_of": self.swept_at,
        }


@attr.s(auto_attribs=True)
class _Sweep:
    """A sweep under way: where it is and what it has counted."""

    replicas: int
    after: int = 0
    short: int = 0


class ReplicaCensus(Repeater):
    """
    Counts each replicated bucket's objects short of copies, C{budget}
    objects a run at most (see the module's docstring); L{buckets} is the
    snapshot the status page and the admin API show.

    @param gateway: the daemon's gateway (its config, store and pool, read at
        each run: a reload's replica counts and backends apply at once).
    @param now: the wall clock of C{as_of} (seconds since the epoch).
    """

    PAGE = 1000

    def __init__(
        self,
        gateway: GatewayLike,
        period: float = 10.0,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        budget: int = 10000,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__("replica-census", period, clock=clock, metrics=metrics, quiet_errors=OUTAGES)
        self.gateway = gateway
        self.budget = budget
        self.now = now
        self.maker = ReplicaMaker(gateway)
        self.results: dict[str, BucketCensus] = {}
        self._sweeps: dict[str, _Sweep] = {}
        self._next_bucket = ""

    def buckets(self) -> list[dict[str, Any]]:
        """The last complete sweep of each replicated bucket, by name (a bucket not swept yet: absent)."""
        return [self.results[name].document() for name in sorted(self.results)]

    async def wanted(self) -> dict[str, int]:
        """Bucket -> copies wanted, for every bucket that wants more than one (as the replica repair finds them)."""
        config = self.gateway.config
        names = {bucket.name for bucket in config.virtual_buckets}
        if config.balancer.replicas > 1:
            names.update(bucket.name for bucket in await self.gateway.store.list_buckets())
        wanted = {name: self.maker.wanted(name) for name in names}
        return {name: want for name, want in wanted.items() if want > 1}

    async def run(self) -> None:
        wanted = await self.wanted()
        for gone in set(self.results) - set(wanted):
            del self.results[gone]
        for gone in set(self._sweeps) - set(wanted):
            del self._sweeps[gone]
        if not wanted:
            return
        # Round-robin from where the last run stopped, so a big bucket cannot starve the others.
        order = sorted(wanted)
        start = next((i for i, name in enumerate(order) if name >= self._next_bucket), 0)
        order = order[start:] + order[:start]
        budget = self.budget
        for position, bucket in enumerate(order):
            if budget <= 0 or not self.keep_going():
                self._next_bucket = bucket
                return
            budget -= await self._sweep(bucket, wanted[bucket], budget)
            self._next_bucket = order[(position + 1) % len(order)]

    async def _sweep(self, bucket: str, want: int, budget: int) -> int:
        """Go on with C{bucket}'s sweep for up to C{budget} objects; -> the objects looked at."""
        sweep = self._sweeps.get(bucket)
        if sweep is None or sweep.replicas != want:
            sweep = self._sweeps[bucket] = _Sweep(want)
        looked = 0
        live = [name for name in self.gateway.pool.names() if self.maker.counts(Location(name, ""))]
        while looked < budget and self.keep_going():
            limit = min(self.PAGE, budget - looked)
            records, cursor = await self.gateway.store.under_replicated(bucket, want, sweep.after, limit, live)
            if cursor == sweep.after:
                self.results[bucket] = BucketCensus(bucket, want, sweep.short, self.now())
                del self._sweeps[bucket]
                return looked
            looked += limit  # (at most: the page's size is not told)
            sweep.short += len(records)
            sweep.after = cursor
        return looked
