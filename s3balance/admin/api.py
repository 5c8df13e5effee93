"""
The admin API: JSON over HTTP under C{/admin/}, every request authorised by
C{Authorization: Bearer <api.token>}.

    GET  /admin/backends                    every backend: state, usage, limits, this month's operations
    GET  /admin/backends/<name>             one backend
    POST /admin/backends/<name>/disable     no new objects there (existing ones stay readable)
    POST /admin/backends/<name>/enable      undo the above
    GET  /admin/strategy                    the active strategy and the installed ones
    PUT  /admin/strategy                    {"strategy": "weighted"}
    POST /admin/reload                      re-read the config file (as SIGHUP)
    GET  /admin/stats/operations?month=YYYY-MM   type A/B operations per backend
    GET  /admin/drains                      every drain (s3balance.ops.drain): state, progress, rate, ETA
    GET  /admin/backends/<name>/drain       one backend's drain
    POST /admin/backends/<name>/drain       start draining it (no new objects; every object moved to
                                            the others); {"rate": "50MB/s"} optional (0: unlimited)
    POST /admin/backends/<name>/drain/pause   .../resume ({"rate": ...} optional)   .../cancel
    GET  /admin/rebalance                   the rebalance (s3balance.ops.rebalance): state, each backend's
                                            fraction, moved, rate, ETA
    POST /admin/rebalance                   start it: {"margin": 0.05, "rate": "50MB/s"} both optional
    POST /admin/rebalance/pause   .../resume ({"rate": ...} optional)   DELETE /admin/rebalance (cancel)
    GET  /admin/buckets                     every virtual bucket: usage, reservations, quota
    GET  /admin/buckets/<name>              one virtual bucket
    PUT  /admin/buckets/<name>/quota        {"max_size": "10GiB", "max_objects": 100000} (either may be null)
    DELETE /admin/buckets/<name>/quota      no quota any more
    GET  /admin/jobs                        every cluster-wide job: paused or not, whether this daemon
                                            leads it, the lease's holder (s3balance.ops.pauses)
    GET  /admin/jobs/<name>                 one job
    POST /admin/jobs/<name>/pause           no daemon runs it until resumed ({"reason": "..."} optional)
    POST /admin/jobs/<name>/resume          undo the above (a run starts at once in the leader)

The resource only speaks HTTP and JSON; what it does to the service goes
through L{IAdminTarget}, so it is tested without a running daemon.  Errors
are C{{"error": <code>, "message": <one line>}} with a 4xx/5xx status.

Over 500 lines: one resource's routing table with a short handler per
endpoint (buckets, quotas, drains, jobs, rebalance, reload, stats); the work
is in the target (L{s3balance.admin.target}), the routing shared by all.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any, Optional, Union, cast
from urllib.parse import unquote

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import Interface

from s3balance.config import ConfigError
from s3balance.config.fields import _positive_int, _positive_size
from s3balance.config.units import parse_rate
from s3balance.metrics import bearer_token_matches

__all__ = [
    "AdminError",
    "AdminResource",
    "DrainConflict",
    "ConfigQuota",
    "IAdminTarget",
    "NoRebalance",
    "NoSuchDrain",
    "RebalanceConflict",
    "UnknownBackend",
    "UnknownBucket",
    "UnknownJob",
    "parse_month",
    "parse_quota",
]

log = Logger()

MAX_BODY = 64 * 1024
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

Token = Union[str, Callable[[], str]]


class UnknownBackend(KeyError):
    """No backend of that name in the running configuration."""


class NoSuchDrain(KeyError):
    """The backend has no drain."""


class DrainConflict(Exception):
    """What was asked of a drain does not fit its state (resuming a finished one, no backend to move to)."""


class NoRebalance(KeyError):
    """No rebalance is under way (or, for a report, none was ever started)."""


class RebalanceConflict(Exception):
    """What was asked of the rebalance does not fit its state (pausing a finished one)."""


class UnknownBucket(KeyError):
    """No virtual bucket of that name in the store."""


class UnknownJob(KeyError):
    """No cluster-wide background job of that name (s3balance.ops.pauses); C{known}: those there are."""

    def __init__(self, name: str, known: tuple[str, ...] = ()) -> None:
        super().__init__(name)
        self.known = known


class ConfigQuota(Exception):
    """A quota the configuration sets (C{key}: where, when this daemon's config does) may not be changed here."""

    def __init__(self, bucket: str, key: str = "") -> None:
        super().__init__(bucket)
        self.bucket = bucket
        self.key = key


class ConfigOwner(Exception):
    """A configured bucket's owner is the configuration's (C{key}: where it names the bucket)."""

    def __init__(self, bucket: str, key: str = "") -> None:
        super().__init__(bucket)
        self.bucket = bucket
        self.key = key


class UnknownAccount(KeyError):
    """No configured account of that id."""


class AdminError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class IAdminTarget(Interface):
    """What the admin API may read from and do to the running service."""

    def backends_report() -> Deferred[list[dict[str, Any]]]:
        """-> Deferred[list[dict]], one JSON-able dict per backend in name
        order, never carrying a secret."""

    def set_backend_enabled(name: str, enabled: bool) -> None:
        """Runtime override: a disabled backend gets no new objects (its
        objects stay readable); kept across reloads until changed.  Raises
        L{UnknownBackend}.  -> None"""

    def strategy_name() -> str:
        """-> str, the active placement strategy."""

    def strategy_names() -> list[str]:
        """-> list[str], the installed strategies."""

    def set_strategy(name: str) -> None:
        """Switch the placement strategy for the next placements.  Raises
        ConfigError (UnknownStrategy) naming the installed ones. -> None"""

    def reload() -> Deferred[str]:
        """Re-read the configuration file. -> Deferred[str] (a one-line
        summary); fails with ConfigError (one line) and then changes nothing."""

    def operation_counts(month: str) -> Deferred[dict[str, Any]]:
        """month 'YYYY-MM' -> Deferred[dict] {"month": .., "backends": {name:
        {"type_a": int, "type_b": int, ...}}}"""

    def drains_report() -> Deferred[list[dict[str, Any]]]:
        """-> Deferred[list[dict]], every drain (L{s3balance.ops.drain.drain_document}) by backend."""

    def drain_report(name: str) -> Deferred[dict[str, Any]]:
        """-> Deferred[dict], one backend's drain; fails with L{NoSuchDrain}."""

    def start_drain(name: str, rate: Optional[int]) -> Deferred[dict[str, Any]]:
        """Drain backend C{name} (C{rate} bytes/s; None: as configured or as
        set before; 0: unlimited); a drain under way gets the rate.
        -> Deferred[dict]; fails with L{UnknownBackend}, or L{DrainConflict}
        when no other backend could take its objects."""

    def set_drain_paused(name: str, paused: bool, rate: Optional[int]) -> Deferred[dict[str, Any]]:
        """Pause or resume (with C{rate} when not None) a drain under way.
        -> Deferred[dict]; fails with L{NoSuchDrain}, L{DrainConflict} (done)."""

    def cancel_drain(name: str) -> Deferred[dict[str, Any]]:
        """Forget a drain: the backend takes new objects again, what moved
        stays moved. -> Deferred[dict] (the drain as it was); fails with L{NoSuchDrain}."""

    def rebalance_report() -> Deferred[dict[str, Any]]:
        """-> Deferred[dict], the rebalance (L{s3balance.ops.rebalance.rebalance_document};
        state None when none was started) and every backend's fraction."""

    def start_rebalance(margin: Optional[float], rate: Optional[int]) -> Deferred[dict[str, Any]]:
        """Start a rebalance (C{margin} None: the default, or the one under
        way's), or set the margin and rate of the one under way (a paused one
        goes on). -> Deferred[dict]; fails with L{RebalanceConflict} when
        fewer than two backends take new objects."""

    def set_rebalance_paused(paused: bool, rate: Optional[int]) -> Deferred[dict[str, Any]]:
        """Pause or resume (with C{rate} when not None) the rebalance under
        way. -> Deferred[dict]; fails with L{NoRebalance}, L{RebalanceConflict}."""

    def cancel_rebalance() -> Deferred[dict[str, Any]]:
        """Cancel the rebalance under way (what moved stays moved).
        -> Deferred[dict]; fails with L{NoRebalance}, L{RebalanceConflict}."""

    def replicas_report() -> dict[str, Any]:
        """-> dict, the objects short of copies per bucket wanting more than
        one (L{s3balance.ops.replica_census}: the last complete sweep of
        each, with when it ended; a bucket not swept yet is absent) and the
        census's period."""

    def recount_usage(bucket: Optional[str]) -> Deferred[list[dict[str, Any]]]:
        """Recount the usage counters of C{bucket} (None: every bucket) from
        the object rows (L{s3balance.store.quotas.recount_usage}), one
        transaction per bucket. -> Deferred[list[dict]], per bucket its
        objects and bytes before and after; fails with L{UnknownBucket}."""

    def buckets_report() -> Deferred[list[dict[str, Any]]]:
        """-> Deferred[list[dict]], one JSON-able dict per virtual bucket in
        name order: usage, reservations, quota."""

    def set_bucket_quota(name: str, max_size: Optional[int], max_objects: Optional[int]) -> Deferred[dict[str, Any]]:
        """Set (or, both None, remove) a bucket's quota. -> Deferred[dict]
        (the bucket's report); fails with L{UnknownBucket} and, for a quota
        the configuration sets, L{ConfigQuota}."""

    def accounts_report() -> Deferred[list[dict[str, Any]]]:
        """-> Deferred[list[dict]], one JSON-able dict per account
        (s3balance.admin.accounts): credentials' key ids, buckets owned."""

    def set_bucket_owner(name: str, account: str) -> Deferred[dict[str, Any]]:
        """Hand an API-created bucket to another account. -> Deferred[dict]
        (the bucket's report); fails with L{UnknownBucket},
        L{UnknownAccount} and, for a configured bucket, L{ConfigOwner}."""

    def jobs_report() -> Deferred[list[dict[str, Any]]]:
        """-> Deferred[list[dict]], every cluster-wide background job by
        name: paused or not (since when, by whom, why), whether this daemon
        leads it, the lease's holder."""

    def set_job_paused(name: str, paused: bool, by: Optional[str], reason: Optional[str]) -> Deferred[dict[str, Any]]:
        """Pause (C{by}, C{reason}: what the report shows) or resume a
        cluster-wide job. -> Deferred[dict] (the job's report); fails with
        L{UnknownJob}."""


def parse_quota(body: object) -> tuple[Optional[int], Optional[int]]:
    """C{{"max_size": "10GiB" or bytes, "max_objects": n}} (null or absent: no limit on that count; one at least)."""
    if not isinstance(body, dict):
        raise AdminError(400, "invalid_request", 'expected {"max_size": "10GiB", "max_objects": 100000}')
    unknown = sorted(set(body) - {"max_size", "max_objects"})
    if unknown:
        raise AdminError(400, "invalid_request", f"unknown key {unknown[0]!r}: expected max_size and/or max_objects")
    limits: list[Optional[int]] = []
    for key, convert in (("max_size", _positive_size), ("max_objects", _positive_int)):
        value = body.get(key)
        try:
            limits.append(None if value is None else convert(value))
        except ValueError as error:
            raise AdminError(400, "invalid_quota", f"{key}: {error}") from None
    max_size, max_objects = limits
    if max_size is None and max_objects is None:
        raise AdminError(400, "invalid_quota", "give max_size, max_objects or both (DELETE removes the quota)")
    return max_size, max_objects


def parse_month(value: Optional[str], now: Callable[[], datetime.datetime]) -> str:
    """C{YYYY-MM}, defaulting to the current UTC month; AdminError when malformed."""
    if not value:
        return now().astimezone(datetime.UTC).strftime("%Y-%m")
    if not _MONTH.match(value):
        raise AdminError(400, "invalid_month", "month must be YYYY-MM")
    return value


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# (resource, request, route parameters, JSON body) -> (status, JSON document)
Handler = Callable[["AdminResource", Any, dict[str, str], Any], Coroutine[Any, Any, tuple[int, object]]]


class AdminResource(Resource):
    """
    The C{/admin} subtree (a leaf: the routes below are matched on
    C{request.postpath}).

    @param target: an L{IAdminTarget}.
    @param token: C{api.token}, or a callable returning it (so a reload can
        change it).  An empty token refuses every request.
    """

    isLeaf = True
    # The largest request body read (the server answers 413 past it); JSON
    # documents here are a few bytes.
    max_body = MAX_BODY

    def __init__(self, target: IAdminTarget, token: Token, now: Callable[[], datetime.datetime] = _utcnow) -> None:
        super().__init__()
        self.target = target
        self.token = token
        self.now = now

    # -- routing: (method, path segments, handler); "{name}" matches one segment

    async def list_backends(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, {"backends": await self.target.backends_report()}

    async def get_backend(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, await self._one_backend(params["name"])

    async def disable_backend(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return await self._set_enabled(params["name"], False)

    async def enable_backend(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return await self._set_enabled(params["name"], True)

    async def get_strategy(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, {"strategy": self.target.strategy_name(), "available": self.target.strategy_names()}

    async def put_strategy(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        name = body.get("strategy") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise AdminError(400, "invalid_request", 'expected {"strategy": "<name>"}')
        try:
            self.target.set_strategy(name.strip())
        except ConfigError as error:
            raise AdminError(400, "unknown_strategy", str(error)) from None
        log.info("admin: placement strategy set to {strategy}", strategy=self.target.strategy_name())
        return 200, {"strategy": self.target.strategy_name(), "available": self.target.strategy_names()}

    async def reload(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        try:
            summary = await self.target.reload()
        except ConfigError as error:
            raise AdminError(400, "invalid_config", str(error)) from None
        return 200, {"reloaded": True, "summary": summary}

    async def operation_stats(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        month = parse_month(_query_arg(request, b"month"), self.now)
        return 200, await self.target.operation_counts(month)

    async def list_buckets(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, {"buckets": await self.target.buckets_report()}

    async def get_bucket(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        for report in await self.target.buckets_report():
            if report["name"] == params["name"]:
                return 200, report
        raise AdminError(404, "no_such_bucket", f"no virtual bucket named {params['name']!r}")

    async def put_quota(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        max_size, max_objects = parse_quota(body)
        return await self._set_quota(params["name"], max_size, max_objects)

    async def delete_quota(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return await self._set_quota(params["name"], None, None)

    async def _set_quota(self, name: str, max_size: Optional[int], max_objects: Optional[int]) -> tuple[int, object]:
        try:
            report = await self.target.set_bucket_quota(name, max_size, max_objects)
        except UnknownBucket:
            raise AdminError(404, "no_such_bucket", f"no virtual bucket named {name!r}") from None
        except ConfigQuota as refused:
            where = f" ({refused.key})" if refused.key else " of a daemon on this database"
            raise AdminError(
                409,
                "quota_in_config",
                f"the quota of bucket {name!r} is set in the configuration{where}: change it there and reload",
            ) from None
        log.info(
            "admin: quota of bucket {bucket} set to max_size {max_size}, max_objects {max_objects}",
            bucket=name,
            max_size=max_size,
            max_objects=max_objects,
        )
        return 200, report

    async def list_accounts(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, {"accounts": await self.target.accounts_report()}

    async def get_account(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        for report in await self.target.accounts_report():
            if report["id"] == params["id"]:
                return 200, report
        raise AdminError(404, "no_such_account", f"no account {params['id']!r}")

    async def put_owner(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        name = params["name"]
        account = body.get("account") if isinstance(body, dict) else None
        if not isinstance(account, str) or set(body) != {"account"}:
            raise AdminError(400, "bad_request", 'expected {"account": "<account id>"}')
        try:
            report = await self.target.set_bucket_owner(name, account)
        except UnknownBucket:
            raise AdminError(404, "no_such_bucket", f"no virtual bucket named {name!r}") from None
        except UnknownAccount:
            raise AdminError(400, "no_such_account", f"no account {account!r} in s3api.accounts") from None
        except ConfigOwner as refused:
            raise AdminError(
                409,
                "owner_in_config",
                f"bucket {name!r} is configured ({refused.key}): its owner is set there "
                "(owner, or s3api.default_owner); change it there and reload",
            ) from None
        log.info("admin: bucket {bucket} handed to account {account}", bucket=name, account=account)
        return 200, report

    async def list_drains(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, {"drains": await self.target.drains_report()}

    async def get_drain(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, await self._drain_call(params["name"], self.target.drain_report(params["name"]))

    async def start_drain(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        name, rate = params["name"], _drain_rate(body)
        drain = await self._drain_call(name, self.target.start_drain(name, rate))
        log.info("admin: drain of backend {backend} started (rate {rate})", backend=name, rate=drain["rate_limit"])
        return 200, drain

    async def pause_drain(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        drain = await self._drain_call(params["name"], self.target.set_drain_paused(params["name"], True, None))
        log.info("admin: drain of backend {backend} paused", backend=params["name"])
        return 200, drain

    async def resume_drain(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        name, rate = params["name"], _drain_rate(body)
        drain = await self._drain_call(name, self.target.set_drain_paused(name, False, rate))
        log.info("admin: drain of backend {backend} resumed", backend=name)
        return 200, drain

    async def cancel_drain(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        drain = await self._drain_call(params["name"], self.target.cancel_drain(params["name"]))
        log.info("admin: drain of backend {backend} cancelled; it takes new objects again", backend=params["name"])
        return 200, drain

    async def list_jobs(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, {"jobs": await self.target.jobs_report()}

    async def get_job(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        reports = await self.target.jobs_report()
        for report in reports:
            if report["name"] == params["name"]:
                return 200, report
        raise _unknown_job(params["name"], tuple(report["name"] for report in reports))

    async def pause_job(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        reason = body.get("reason") if isinstance(body, dict) else None
        if reason is not None and not isinstance(reason, str):
            raise AdminError(400, "invalid_request", 'expected {"reason": "<text>"} or no body')
        client = getattr(request.getClientAddress(), "host", None)
        by = f"admin API ({client})" if client else "admin API"
        job = await self._job_call(params["name"], self.target.set_job_paused(params["name"], True, by, reason))
        log.info("admin: job {job} paused ({reason})", job=params["name"], reason=reason or "no reason given")
        return 200, job

    async def resume_job(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        job = await self._job_call(params["name"], self.target.set_job_paused(params["name"], False, None, None))
        log.info("admin: job {job} resumed", job=params["name"])
        return 200, job

    async def _job_call(self, name: str, call: Deferred[dict[str, Any]]) -> dict[str, Any]:
        try:
            return await call
        except UnknownJob as unknown:
            raise _unknown_job(name, unknown.known) from None

    async def _drain_call(self, name: str, call: Deferred[dict[str, Any]]) -> dict[str, Any]:
        try:
            return await call
        except UnknownBackend:
            raise AdminError(404, "no_such_backend", f"no backend named {name!r}") from None
        except NoSuchDrain:
            raise AdminError(404, "no_drain", f"backend {name!r} is not being drained") from None
        except DrainConflict as conflict:
            raise AdminError(409, "drain_conflict", str(conflict)) from None

    async def recount_usage(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        bucket = None
        if body is not None and body != {}:
            if not isinstance(body, dict) or set(body) - {"bucket"} or not isinstance(body.get("bucket"), str):
                raise AdminError(400, "invalid_request", 'expected {"bucket": "<name>"} or no body (every bucket)')
            bucket = body["bucket"]
        try:
            recounted = await self.target.recount_usage(bucket)
        except UnknownBucket:
            raise AdminError(404, "no_such_bucket", f"no virtual bucket named {bucket!r}") from None
        for entry in recounted:
            if entry["changed"]:
                log.info(
                    "admin: usage of {bucket} recounted: {objects} objects, {bytes} bytes (the counters said "
                    "{objects_before}, {bytes_before})",
                    bucket=entry["bucket"], objects=entry["objects"], bytes=entry["bytes"],
                    objects_before=entry["before"]["objects"], bytes_before=entry["before"]["bytes"],
                )
        return 200, {"buckets": recounted}

    async def get_replicas(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, self.target.replicas_report()

    async def get_rebalance(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        return 200, await self._rebalance_call(self.target.rebalance_report())

    async def start_rebalance(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        margin, rate = _rebalance_margin(body), _drain_rate(body)
        report = await self._rebalance_call(self.target.start_rebalance(margin, rate))
        log.info("admin: rebalance started (margin {margin}, rate {rate})", margin=report["margin"],
                 rate=report["rate_limit"])
        return 200, report

    async def pause_rebalance(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        report = await self._rebalance_call(self.target.set_rebalance_paused(True, None))
        log.info("admin: rebalance paused")
        return 200, report

    async def resume_rebalance(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        report = await self._rebalance_call(self.target.set_rebalance_paused(False, _drain_rate(body)))
        log.info("admin: rebalance resumed")
        return 200, report

    async def cancel_rebalance(self, request: Any, params: dict[str, str], body: Any) -> tuple[int, object]:
        report = await self._rebalance_call(self.target.cancel_rebalance())
        log.info("admin: rebalance cancelled")
        return 200, report

    async def _rebalance_call(self, call: Deferred[dict[str, Any]]) -> dict[str, Any]:
        try:
            return await call
        except NoRebalance:
            raise AdminError(404, "no_rebalance", "no rebalance is under way") from None
        except RebalanceConflict as conflict:
            raise AdminError(409, "rebalance_conflict", str(conflict)) from None

    ROUTES: tuple[tuple[str, tuple[str, ...], Handler], ...] = (
        ("GET", ("backends",), list_backends),
        ("GET", ("backends", "{name}"), get_backend),
        ("POST", ("backends", "{name}", "disable"), disable_backend),
        ("POST", ("backends", "{name}", "enable"), enable_backend),
        ("GET", ("strategy",), get_strategy),
        ("PUT", ("strategy",), put_strategy),
        ("POST", ("reload",), reload),
        ("GET", ("stats", "operations"), operation_stats),
        ("GET", ("drains",), list_drains),
        ("GET", ("backends", "{name}", "drain"), get_drain),
        ("POST", ("backends", "{name}", "drain"), start_drain),
        ("POST", ("backends", "{name}", "drain", "pause"), pause_drain),
        ("POST", ("backends", "{name}", "drain", "resume"), resume_drain),
        ("POST", ("backends", "{name}", "drain", "cancel"), cancel_drain),
        ("GET", ("rebalance",), get_rebalance),
        ("POST", ("rebalance",), start_rebalance),
        ("DELETE", ("rebalance",), cancel_rebalance),
        ("POST", ("rebalance", "pause"), pause_rebalance),
        ("POST", ("rebalance", "resume"), resume_rebalance),
        ("POST", ("rebalance", "cancel"), cancel_rebalance),
        ("GET", ("replicas",), get_replicas),
        ("POST", ("quota", "recount"), recount_usage),
        ("GET", ("buckets",), list_buckets),
        ("GET", ("buckets", "{name}"), get_bucket),
        ("PUT", ("buckets", "{name}", "quota"), put_quota),
        ("DELETE", ("buckets", "{name}", "quota"), delete_quota),
        ("PUT", ("buckets", "{name}", "owner"), put_owner),
        ("GET", ("accounts",), list_accounts),
        ("GET", ("accounts", "{id}"), get_account),
        ("GET", ("jobs",), list_jobs),
        ("GET", ("jobs", "{name}"), get_job),
        ("POST", ("jobs", "{name}", "pause"), pause_job),
        ("POST", ("jobs", "{name}", "resume"), resume_job),
    )

    async def _one_backend(self, name: str) -> dict:
        for report in await self.target.backends_report():
            if report["name"] == name:
                return report
        raise AdminError(404, "no_such_backend", f"no backend named {name!r}")

    async def _set_enabled(self, name: str, enabled: bool) -> tuple[int, object]:
        try:
            self.target.set_backend_enabled(name, enabled)
        except UnknownBackend:
            raise AdminError(404, "no_such_backend", f"no backend named {name!r}") from None
        log.info(
            "admin: backend {backend} {action} for new objects",
            backend=name,
            action="enabled" if enabled else "disabled",
        )
        return 200, await self._one_backend(name)

    def _match(self, method: str, segments: list[str]) -> tuple[Handler, dict]:
        allowed = []
        for route_method, pattern, handler in self.ROUTES:
            if len(pattern) != len(segments):
                continue
            params = {}
            for expected, segment in zip(pattern, segments, strict=True):
                if expected.startswith("{"):
                    params[expected.strip("{}")] = segment
                elif expected != segment:
                    break
            else:
                if route_method == method:
                    return handler, params
                allowed.append(route_method)
        if allowed:
            raise AdminError(405, "method_not_allowed", f"use {', '.join(sorted(set(allowed)))}")
        raise AdminError(404, "not_found", "no such admin endpoint")

    # -- HTTP ---------------------------------------------------------------------

    def refuse_before_body(self, request: Request) -> Optional[bytes]:
        """
        The 401 answer (code and headers set on C{request}) for a request
        without a valid token, or None.  The server asks as soon as the
        headers are in, so a refused request's body is never read.
        """
        if bearer_token_matches(request, self.token):
            return None
        log.warn(
            "admin: refused a request without a valid token from {client}",
            client=getattr(request.getClientAddress(), "host", "?"),
        )
        request.setHeader(b"www-authenticate", b'Bearer realm="s3balance admin"')
        return self._error_body(request, AdminError(401, "unauthorized", "a valid bearer token is required"))

    def render(self, request: Any) -> bytes | int:  # Twisted types Request.postpath as optional
        refusal = self.refuse_before_body(request)
        if refusal is not None:
            return refusal
        method = request.method.decode("ascii", "replace").upper()
        segments = [unquote(segment.decode("utf-8", "replace")) for segment in request.postpath]
        while segments and segments[-1] == "":
            segments.pop()
        try:
            handler, params = self._match(method, segments)
            body = self._json_body(request) if method in ("PUT", "POST") else {}
        except AdminError as error:
            return self._error_body(request, error)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = ensureDeferred(handler(self, request, params, body))

        def answer(result: tuple[int, object]) -> None:
            status, document = result
            if not gone:
                request.write(self._body(request, status, document))
                request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(AdminError):
                error = cast(AdminError, failure.value)
            else:
                log.failure("admin: {method} {path} failed", failure, method=method, path="/".join(segments))
                error = AdminError(500, "internal_error", "the request failed; see the daemon's log")
            if not gone:
                request.write(self._error_body(request, error))
                request.finish()

        d.addCallbacks(answer, failed)
        return NOT_DONE_YET

    def _json_body(self, request: Any) -> Any:  # Twisted types Request.content as None
        content = request.content
        raw = b""
        if content is not None:
            content.seek(0)
            raw = content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise AdminError(413, "too_large", "the request body is too large")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise AdminError(400, "invalid_json", "the request body is not JSON") from None

    def _body(self, request: Request, status: int, document: object) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
        request.setHeader(b"content-length", str(len(body)).encode())
        return body

    def _error_body(self, request: Request, error: AdminError) -> bytes:
        return self._body(request, error.status, {"error": error.code, "message": error.message})


def _unknown_job(name: str, known: tuple[str, ...]) -> AdminError:
    jobs = f": the jobs are {', '.join(known)}" if known else ""
    return AdminError(404, "no_such_job", f"no cluster-wide background job named {name!r}{jobs}")


def _drain_rate(body: object) -> Optional[int]:
    """A drain's C{{"rate": "50MB/s"}} (bytes per second, 0 unlimited); None when absent or null."""
    value = body.get("rate") if isinstance(body, dict) else None
    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError as error:
        raise AdminError(400, "invalid_rate", f"rate: {error}") from None


def _rebalance_margin(body: object) -> Optional[float]:
    """A rebalance's C{{"margin": 0.05}} (or "5%"); None when absent or null."""
    value = body.get("margin") if isinstance(body, dict) else None
    if value is None:
        return None
    from s3balance.ops.rebalance import parse_margin

    try:
        return parse_margin(value)
    except ValueError as error:
        raise AdminError(400, "invalid_margin", f"margin: {error}") from None


def _query_arg(request: Any, name: bytes) -> Optional[str]:  # Twisted types Request.args as None
    values = (request.args or {}).get(name)
    return values[0].decode("utf-8", "replace") if values else None
