"""
L{IAdminTarget} for the running L{s3balance.daemon.service.GatewayService}.

It works on the service's own objects: C{service.pool} (backends, health,
usage, and the runtime C{disabled} set the pool consults when placing),
C{service.gateway.strategy} / C{.config} (replaced as a whole, so in-flight
requests finish on what they started with) and C{service.store}.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit, urlunsplit

from twisted.internet.defer import Deferred, ensureDeferred, fail
from zope.interface import implementer

from s3balance.admin.accounts import accounts_report, owners_of
from s3balance.admin.api import (
    ConfigOwner,
    ConfigQuota,
    DrainConflict,
    IAdminTarget,
    NoSuchDrain,
    UnknownAccount,
    UnknownBackend,
    UnknownBucket,
    UnknownJob,
)
from s3balance.admin.rebalance_target import RebalanceAdmin
from s3balance.config import ConfigError
from s3balance.ops.drain import drain_document
from s3balance.ops.pauses import pause_document
from s3balance.s3.access import bucket_owner
from s3balance.store.interfaces import (
    BucketUsage,
    ConfigQuotaError,
    DrainRecord,
    DrainStateError,
    NoSuchBucketError,
)
from s3balance.store.moves import DRAINING, PAUSED

if TYPE_CHECKING:
    from s3balance.daemon.reload import Reloader

__all__ = ["ServiceAdminTarget", "public_endpoint"]


def public_endpoint(url: str) -> str:
    """The endpoint URL without any user:password part."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@implementer(IAdminTarget)
class ServiceAdminTarget:
    """
    @param reloader: a L{s3balance.daemon.reload.Reloader}, or None when the service
        was not started from a file (reload is then refused).
    """

    def __init__(self, service: Any, reloader: Optional[Reloader] = None, now: Callable[[], datetime.datetime] = _utcnow) -> None:
        self.service = service
        self.reloader = reloader
        self.now = now
        pool = service.pool
        if not isinstance(getattr(pool, "disabled", None), set):
            pool.disabled = set()

    @property
    def disabled(self) -> set[str]:
        """Backends disabled at runtime; lives on the pool so it survives reloads."""
        disabled: set[str] = self.service.pool.disabled
        return disabled

    def _month(self) -> str:
        return self.now().astimezone(datetime.UTC).strftime("%Y-%m")

    # -- backends -------------------------------------------------------------

    def backends_report(self) -> Deferred:
        return ensureDeferred(self._backends_report())

    async def _backends_report(self) -> list[dict]:
        month = self._month()
        counts = {row.backend: row for row in await self.service.store.operation_counts(month)}
        pool = self.service.pool
        reports = []
        for name in pool.names():
            backend = pool.get(name)
            if backend is None:
                continue
            config = backend.config
            used, objects = pool.usage(name)
            reserved = pool.reserved(name)
            health = pool.health(name).as_dict()
            row = counts.get(name)
            type_a, type_b = (row.type_a, row.type_b) if row else (0, 0)
            counter = getattr(pool, "counter", None)
            if counter is not None and getattr(counter, "month", None) == month:
                # The counter adds this daemon's operations not yet flushed to the store.
                type_a, type_b = (
                    max(x, y) for x, y in zip((type_a, type_b), counter.count(name), strict=True)
                )
            reports.append(
                {
                    "name": name,
                    "endpoint": public_endpoint(config.endpoint_url),
                    "region": config.region,
                    "path_style": config.path_style,
                    "enabled": config.enabled and name not in self.disabled,
                    "enabled_in_config": config.enabled,
                    "disabled_at_runtime": name in self.disabled,
                    # Its drain's state (draining, paused, done: no new objects), or None.
                    "drain": self._drain_state(name),
                    # Enabled, up and under its class A limit: may receive new objects now.
                    "writable": pool.writable(name) if hasattr(pool, "writable") else None,
                    "up": health["up"],
                    "health": health,
                    "used_bytes": used,
                    "objects": objects,
                    "max_size": config.max_size,
                    "free_bytes": None if config.max_size is None else config.max_size - used - reserved,
                    "reserved_bytes": reserved,
                    "weight": config.weight,
                    "operation_limits": {
                        "type_a": config.operation_limits.type_a,
                        "type_b": config.operation_limits.type_b,
                    },
                    "operations": {
                        "month": month,
                        "type_a": type_a,
                        "type_b": type_b,
                    },
                }
            )
        return reports

    def set_backend_enabled(self, name: str, enabled: bool) -> None:
        if self.service.pool.get(name) is None:
            raise UnknownBackend(name)
        if enabled:
            self.disabled.discard(name)
        else:
            self.disabled.add(name)

    # -- strategy -------------------------------------------------------------

    def strategy_name(self) -> str:
        name: str = self.service.gateway.strategy.name
        return name

    def strategy_names(self) -> list[str]:
        from s3balance.placement.registry import available_strategies

        return list(available_strategies())

    def set_strategy(self, name: str) -> None:
        from s3balance.placement.registry import make_strategy

        strategy = make_strategy(name)  # raises UnknownStrategy naming the installed ones
        gateway = self.service.gateway
        if gateway.strategy.name != strategy.name:
            gateway.strategy = strategy

    # -- reload and statistics ------------------------------------------------

    def reload(self) -> Deferred:
        if self.reloader is None:
            return fail(ConfigError("reload: the service was not started from a configuration file"))
        d: Deferred = self.reloader.reload()
        return d

    def operation_counts(self, month: Optional[str]) -> Deferred:
        return ensureDeferred(self._operation_counts(month or self._month()))

    # -- virtual buckets: usage and quotas ---------------------------------------

    def _bucket_report(self, row: BucketUsage, owner: Optional[str] = None) -> dict:
        configured = self.service.gateway.config.virtual_bucket(row.bucket)
        quota = None
        if row.quota.limited:
            quota = {
                "max_size": row.quota_bytes,
                "max_objects": row.quota_objects,
                "set_by": row.quota_origin,
                "config_key": configured.quota.key if configured is not None and configured.quota else None,
            }
        return {
            "name": row.bucket,
            "origin": row.origin,
            "owner": owner,
            "used_bytes": row.used_bytes,
            "objects": row.object_count,
            "reserved_bytes": row.reserved_bytes,
            "reserved_objects": row.reserved_objects,
            "quota": quota,
            "free_bytes": None if row.quota_bytes is None else row.quota_bytes - row.used_bytes - row.reserved_bytes,
            "free_objects": (
                None if row.quota_objects is None else row.quota_objects - row.object_count - row.reserved_objects
            ),
        }

    def buckets_report(self) -> Deferred:
        return ensureDeferred(self._buckets_report())

    async def _buckets_report(self) -> list[dict]:
        rows = await self.service.store.bucket_usage()
        self.service.gateway.set_bucket_usage(rows)
        owners = owners_of(self.service.gateway.config, await self.service.store.list_buckets())
        return [self._bucket_report(row, owners.get(row.bucket)) for row in rows]

    def set_bucket_quota(self, name: str, max_size: Optional[int], max_objects: Optional[int]) -> Deferred:
        return ensureDeferred(self._set_bucket_quota(name, max_size, max_objects))

    async def _set_bucket_quota(self, name: str, max_size: Optional[int], max_objects: Optional[int]) -> dict:
        gateway = self.service.gateway
        configured = gateway.config.virtual_bucket(name)
        if configured is not None and configured.quota is not None:
            raise ConfigQuota(name, configured.quota.key)
        try:
            row = await self.service.store.set_bucket_quota(name, max_size, max_objects)
        except NoSuchBucketError:
            raise UnknownBucket(name) from None
        except ConfigQuotaError:
            raise ConfigQuota(name) from None
        others = [known for known in gateway.bucket_usage if known.bucket != name]
        gateway.set_bucket_usage(sorted([*others, row], key=lambda known: known.bucket))
        return self._bucket_report(row, await self._owner_of(name))

    async def _owner_of(self, name: str) -> Optional[str]:
        record = await self.service.store.get_bucket(name)
        recorded = record.owner if record is not None else None
        return bucket_owner(self.service.gateway.config, name, recorded)

    # -- accounts (s3balance.admin.accounts) -----------------------------------------

    def accounts_report(self) -> Deferred:
        return ensureDeferred(self._accounts_report())

    async def _accounts_report(self) -> list[dict]:
        config = self.service.gateway.config
        return accounts_report(config, owners_of(config, await self.service.store.list_buckets()))

    def set_bucket_owner(self, name: str, account: str) -> Deferred:
        return ensureDeferred(self._set_bucket_owner(name, account))

    async def _set_bucket_owner(self, name: str, account: str) -> dict:
        config = self.service.gateway.config
        if config.s3api.account(account) is None:
            raise UnknownAccount(account)
        configured = config.virtual_bucket(name)
        if configured is not None:
            raise ConfigOwner(name, configured.key)
        if not await self.service.store.set_bucket_owner(name, account):
            raise UnknownBucket(name)
        for report in await self._buckets_report():
            if report["name"] == name:
                return report
        raise UnknownBucket(name)

    async def _operation_counts(self, month: str) -> dict:
        rows = await self.service.store.operation_counts(month)
        backends: dict[str, dict] = {}
        for name in self.service.pool.names():
            limits = self.service.pool.get(name).config.operation_limits
            backends[name] = {
                "type_a": 0,
                "type_b": 0,
                "type_a_limit": limits.type_a,
                "type_b_limit": limits.type_b,
            }
        for row in rows:
            entry = backends.setdefault(row.backend, {"type_a": 0, "type_b": 0})
            entry["type_a"] = row.type_a
            entry["type_b"] = row.type_b
        return {"month": month, "backends": dict(sorted(backends.items()))}

    # -- drains (s3balance.ops.drain) -----------------------------------------------

    def _drain_document(self, drain: DrainRecord) -> dict:
        return drain_document(drain, self.service.gateway.config.balancer.drain_rate)

    async def _all_drains(self) -> list[DrainRecord]:
        drains: list[DrainRecord] = await self.service.store.drains()
        self.service.drains.apply(drains)  # this daemon's view, up to date at once
        return drains

    def drains_report(self) -> Deferred:
        return ensureDeferred(self._drains_report())

    async def _drains_report(self) -> list[dict]:
        return [self._drain_document(drain) for drain in await self._all_drains()]

    def drain_report(self, name: str) -> Deferred:
        return ensureDeferred(self._drain_report(name))

    async def _drain_report(self, name: str) -> dict:
        for drain in await self._all_drains():
            if drain.backend == name:
                return self._drain_document(drain)
        raise NoSuchDrain(name)

    def start_drain(self, name: str, rate: Optional[int]) -> Deferred:
        return ensureDeferred(self._start_drain(name, rate))

    async def _start_drain(self, name: str, rate: Optional[int]) -> dict:
        pool = self.service.pool
        if pool.get(name) is None:
            raise UnknownBackend(name)
        others = [
            other
            for other in pool.names()
            if other != name and other not in pool.drains and pool.get(other).config.enabled
        ]
        if not others:
            raise DrainConflict(f"no other backend could take the objects of {name}: every other one is drained or disabled")
        drain = await self.service.store.start_drain(name, rate)
        if drain.state == PAUSED:
            # Asked to drain it: a paused drain goes on.
            drain = await self.service.store.set_drain_state(name, DRAINING) or drain
        self.service.drains.learn(drain)
        self.service.drain_mover.kick()
        return self._drain_document(drain)

    def set_drain_paused(self, name: str, paused: bool, rate: Optional[int]) -> Deferred:
        return ensureDeferred(self._set_drain_paused(name, paused, rate))

    async def _set_drain_paused(self, name: str, paused: bool, rate: Optional[int]) -> dict:
        store = self.service.store
        try:
            drain = await store.set_drain_state(name, PAUSED if paused else DRAINING)
        except DrainStateError as error:
            raise DrainConflict(f"{error}: start it again to drain the backend anew") from None
        if drain is None:
            raise NoSuchDrain(name)
        if rate is not None:
            drain = await store.set_drain_rate(name, rate) or drain
        self.service.drains.learn(drain)
        if not paused:
            self.service.drain_mover.kick()
        return self._drain_document(drain)

    def cancel_drain(self, name: str) -> Deferred:
        return ensureDeferred(self._cancel_drain(name))

    async def _cancel_drain(self, name: str) -> dict:
        drain = await self.service.store.cancel_drain(name)
        if drain is None:
            raise NoSuchDrain(name)
        self.service.drains.forget(name)
        return self._drain_document(drain)

    def _drain_state(self, name: str) -> Optional[str]:
        drains = getattr(self.service, "drains", None)
        return drains.state(name) if drains is not None else None

    # -- usage recount (s3balance.store.quotas.recount_usage) ------------------------------

    def recount_usage(self, bucket: Optional[str]) -> Deferred:
        return ensureDeferred(self._recount_usage(bucket))

    async def _recount_usage(self, bucket: Optional[str]) -> list[dict]:
        store = self.service.store
        names = [bucket] if bucket is not None else [row.bucket for row in await store.bucket_usage()]
        recounted = []
        for name in names:
            try:
                result = await store.recount_bucket_usage(name)
            except NoSuchBucketError:
                raise UnknownBucket(name) from None
            recounted.append(
                {
                    "bucket": result.bucket,
                    "objects": result.objects_after,
                    "bytes": result.bytes_after,
                    "before": {"objects": result.objects_before, "bytes": result.bytes_before},
                    "changed": result.changed,
                }
            )
        return recounted

    # -- the replica census (s3balance.ops.replica_census) ---------------------------------

    def replicas_report(self) -> dict[str, Any]:
        census = getattr(self.service, "replica_census", None)
        return {
            "buckets": census.buckets() if census is not None else [],
            "period_seconds": census.period if census is not None else None,
        }

    # -- the rebalance (s3balance.ops.rebalance, admin.rebalance_target) ------------------

    def rebalance_report(self) -> Deferred:
        return ensureDeferred(RebalanceAdmin(self.service).report())

    def start_rebalance(self, margin: Optional[float], rate: Optional[int]) -> Deferred:
        return ensureDeferred(RebalanceAdmin(self.service).start(margin, rate))

    def set_rebalance_paused(self, paused: bool, rate: Optional[int]) -> Deferred:
        return ensureDeferred(RebalanceAdmin(self.service).set_paused(paused, rate))

    def cancel_rebalance(self) -> Deferred:
        return ensureDeferred(RebalanceAdmin(self.service).cancel())

    # -- cluster-wide jobs: pause and resume (s3balance.ops.pauses) ----------------------

    def jobs_report(self) -> Deferred:
        return ensureDeferred(self._jobs_report())

    async def _jobs_report(self, only: Optional[str] = None) -> list[dict]:
        watcher = self.service.job_pauses
        store = self.service.store
        watcher.apply(await store.paused_jobs())  # this daemon's view, up to date at once
        reports = []
        for job in watcher.elected():
            if only is not None and job.job != only:
                continue
            lease = await store.lease_state(job.job)
            reports.append(
                {
                    "name": job.job,
                    **pause_document(watcher.paused.get(job.job)),
                    # This daemon (process) holds the lease: the job runs here when not paused.
                    "leader": job.holding,
                    "holder": lease.holder if lease is not None and lease.live else None,
                    # A run under way here (a paused job's ends after its current step).
                    "running": job.busy,
                    "period": job.period,
                }
            )
        return reports

    def set_job_paused(self, name: str, paused: bool, by: Optional[str], reason: Optional[str]) -> Deferred:
        return ensureDeferred(self._set_job_paused(name, paused, by, reason))

    async def _set_job_paused(self, name: str, paused: bool, by: Optional[str], reason: Optional[str]) -> dict:
        watcher = self.service.job_pauses
        if watcher.find(name) is None:
            raise UnknownJob(name, tuple(job.job for job in watcher.elected()))
        store = self.service.store
        if paused:
            watcher.learn(await store.pause_job(name, by, reason))
        else:
            await store.resume_job(name)
            watcher.forget(name)
        [report] = await self._jobs_report(only=name)
        return report
