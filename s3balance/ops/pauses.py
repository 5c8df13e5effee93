"""
Pausing and resuming the cluster-wide background jobs.

A paused job is a row of C{job_pauses} (L{s3balance.store.pauses}), so every
daemon of the cluster sees it and a restart keeps it:

  - L{PauseWatcher} (every daemon, every 2 s; and once before the jobs start)
    reads the paused jobs.  Every L{ElectedRepeater} among its siblings in
    the service asks it (C{ElectedRepeater.paused}): a paused job does not
    start a run (C{should_run}), and a run under way stops between steps
    (C{keep_going}: a deletion, a page, an object; the step in progress
    finishes).  The daemon that takes the admin API's request applies it at
    once; the others within the watcher's period.
  - The lease is kept while paused: the daemon that holds it goes on
    renewing it, so the job's leader stays where it was (the admin API
    shows it) and a resume starts a run there at once (the watcher kicks
    the job) instead of waiting for an election or the job's period.
  - Only the job's own runs stop.  What the request path asks of a job
    directly goes on: a sync bucket's replicas and an async one's
    background copies (C{ReplicaRepair.complete}, C{.soon}); deletions
    keep being queued, and are carried out once the deleter is resumed.

Per-daemon jobs (C{usage}, C{operation-counts}, C{drain-state}, this
watcher) cannot be paused; a drain has its own pause (L{s3balance.ops.drain}).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Optional

from twisted.application.service import IServiceCollection
from twisted.logger import Logger

from s3balance.ops.background import BackgroundMetrics, ElectedRepeater, Repeater
from s3balance.ops.cleanup import OUTAGES
from s3balance.store.interfaces import JobPause

if TYPE_CHECKING:
    from s3balance.store.interfaces import IMetadataStore

log = Logger()

__all__ = ["PauseWatcher", "pause_document"]


def _iso(moment: Optional[datetime.datetime]) -> Optional[str]:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


def pause_document(pause: Optional[JobPause]) -> dict[str, Any]:
    """The pause part of a job's JSON (admin API, C{/status}): C{paused} and, when paused, since when, by whom, why."""
    return {
        "paused": pause is not None,
        "paused_at": _iso(pause.paused_at) if pause is not None else None,
        "paused_by": pause.paused_by if pause is not None else None,
        "reason": pause.reason if pause is not None else None,
    }


class PauseWatcher(Repeater):
    """
    Reads the paused jobs every C{period} seconds (and on L{learn} /
    L{forget} from this daemon's admin API at once) for the elected jobs of
    the service it is a child of.
    """

    def __init__(
        self,
        store: IMetadataStore,
        period: float = 2.0,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
    ) -> None:
        super().__init__("job-pauses", period, clock=clock, metrics=metrics, quiet_errors=OUTAGES)
        self.store = store
        self.paused: dict[str, JobPause] = {}

    # -- the jobs it pauses: the elected siblings ---------------------------------------

    def elected(self) -> list[ElectedRepeater]:
        """The cluster-wide jobs of this daemon (the elected repeaters beside this watcher), by name."""
        parent = self.parent
        if parent is None or not IServiceCollection.providedBy(parent):
            return []
        jobs = [child for child in parent if isinstance(child, ElectedRepeater)]
        return sorted(jobs, key=lambda job: job.job)

    def find(self, name: str) -> Optional[ElectedRepeater]:
        for job in self.elected():
            if job.job == name:
                return job
        return None

    def _attach(self) -> list[ElectedRepeater]:
        jobs = self.elected()
        for job in jobs:
            job.pauses = self
        return jobs

    def setServiceParent(self, parent: IServiceCollection) -> None:
        super().setServiceParent(parent)
        self._report(self._attach())

    # -- what the jobs ask ------------------------------------------------------------

    def is_paused(self, job: str) -> bool:
        return job in self.paused

    # -- reading and learning -----------------------------------------------------------

    async def run(self) -> None:
        self.apply(await self.store.paused_jobs())

    def apply(self, pauses: list[JobPause]) -> None:
        """A new snapshot: the jobs resumed since the last one are kicked (a run at once in the lease's holder)."""
        before, self.paused = self.paused, {pause.job: pause for pause in pauses}
        jobs = self._attach()  # elected children added after this watcher are asked too
        for job in jobs:
            name = job.job
            if name in self.paused and name not in before:
                log.info("{job}: paused; it does not run until resumed", job=name)
            elif name in before and name not in self.paused:
                log.info("{job}: resumed", job=name)
                job.kick()
        self._report(jobs)

    def learn(self, pause: JobPause) -> None:
        """A pause this daemon just made."""
        self.apply([*(p for p in self.paused.values() if p.job != pause.job), pause])

    def forget(self, job: str) -> None:
        """A resume this daemon just made."""
        self.apply([p for p in self.paused.values() if p.job != job])

    def _report(self, jobs: list[ElectedRepeater]) -> None:
        if self.metrics is not None:
            for job in jobs:
                self.metrics.pausing(job.job, job.job in self.paused)
