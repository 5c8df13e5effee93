"""
Re-reading the configuration file while serving (SIGHUP or C{POST /admin/reload}).

A reload first does everything that can fail — read and validate the file,
check the strategy, build clients for new or changed backends, add rows for
new virtual buckets — and only then swaps the new state in, in one go on the
reactor thread.  So an invalid file changes nothing, and a request sees
either the old or the new configuration, never a mix: requests read
C{gateway.config} and C{gateway.strategy} once and finish on what they
started with.

What a reload changes: credentials and the rest of C{s3api}, virtual buckets,
backends (added, removed, changed; unchanged ones keep their client, health
and connections), the placement strategy (a new instance only when the
configured name changed, so a round-robin position survives), balancer
periods and thresholds, C{metrics.token} and C{api.token}, C{audit.path}
(the audit log is reopened on every reload, so a rotated file is let go).
What it cannot change: C{server}, C{database}, whether/where metrics and the
admin API are served, whether there is an audit log and its queue size;
those keep their running values until a restart, with a warning.
Runtime overrides made through the admin API (disabled backends) are kept.
A backend that objects are still stored on cannot be removed (drain it first:
L{s3balance.ops.drain}); the reload is refused, naming it.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.logger import Logger

from s3balance.config import BalancerConfig, Config, ConfigError, load_config
from s3balance.daemon.buckets import sync_config_buckets
from s3balance.store.moves import removed_backend_message

__all__ = ["Reloader", "install_sighup"]

log = Logger()


class Reloader:
    """
    @param service: the running L{s3balance.daemon.service.GatewayService}.
    @param config_path: the file the service was started from.
    """

    def __init__(self, service: Any, config_path: str) -> None:
        self.service = service
        self.config_path = config_path
        self._lock = DeferredLock()

    def hold_until(self, started: Deferred) -> None:
        """
        Queue reloads until C{started} fires: a SIGHUP that arrives while the
        service is still starting (migrating the database, say) is applied
        once it is up, instead of racing the start or being lost.
        """
        self._lock.acquire()  # a new lock: taken at once

        def release(result: Any) -> Any:
            self._lock.release()
            return result

        started.addBoth(release)

    def reload(self) -> Deferred:
        """-> Deferred[str], a one-line summary; fails with ConfigError (one line), changing nothing."""
        return self._lock.run(lambda: ensureDeferred(self._reload()))

    async def _reload(self) -> str:
        from s3balance.backends.pool import make_backends
        from s3balance.config.checks import check_config
        from s3balance.placement.registry import make_strategy

        service = self.service
        gateway = service.gateway
        old: Config = gateway.config
        new = load_config(self.config_path)
        check_config(new)
        new, warnings = _keep_fixed_sections(old, new)

        # Validate the name even when unchanged: the plugin may be gone.
        candidate = make_strategy(new.balancer.strategy)
        strategy = candidate if new.balancer.strategy != old.balancer.strategy else None

        pool = service.pool
        running = {name: pool.get(name) for name in pool.names()}
        changed = [b for b in new.backends if b.name not in running or running[b.name].config != b]
        built = {
            backend.name: backend
            for backend in make_backends(
                attrs.evolve(new, backends=tuple(changed)), service.http, service.reactor
            )
        }
        backends = [built.get(b.name) or running[b.name] for b in new.backends]
        removed = sorted(set(running) - {b.name for b in new.backends})

        if removed:
            # Their objects could not be read any more: drain a backend before removing it.
            in_use = await service.store.backends_in_use(removed)
            if in_use:
                raise ConfigError(removed_backend_message(in_use[0]))

        if new.virtual_buckets != old.virtual_buckets:
            await sync_config_buckets(service.store, new)

        # Nothing has changed yet; from here on nothing can fail.
        metrics = getattr(service, "metrics", None)
        for backend in built.values():
            if metrics is not None:
                metrics.watch_backend(backend)
        for name in removed:
            used, objects = pool.usage(name)
            if objects:
                log.warn(
                    "backend {backend} was removed while it holds {objects} object(s) ({bytes} bytes); "
                    "they cannot be read until it is configured again",
                    backend=name,
                    objects=objects,
                    bytes=used,
                )
            if metrics is not None:
                metrics.forget_backend(name)
        pool.replace(backends)
        _apply_balancer(service, old.balancer, new.balancer)
        gateway.config = new
        service.config = new
        apply_rate_limits = getattr(service, "apply_rate_limits", None)
        if apply_rate_limits is not None:
            apply_rate_limits(new)
        audit_file = getattr(service, "audit_file", None)
        if audit_file is not None:
            audit_file.reopen(new.audit.path)  # after a rotation: a new file
        if strategy is not None:
            gateway.strategy = strategy
        service.health.sync()

        summary = _summary(old, new, built, removed, strategy is not None, warnings)
        log.info("configuration reloaded from {path}: {summary}", path=self.config_path, summary=summary)
        return summary


def _keep_fixed_sections(old: Config, new: Config) -> tuple[Config, list[str]]:
    """The new config with the sections that need a restart taken from the running one."""
    warnings = []
    if new.server != old.server or new.database != old.database:
        warnings.append("server/database changes need a restart")
    metrics = attrs.evolve(new.metrics, enabled=old.metrics.enabled, path=old.metrics.path)
    if metrics != new.metrics:
        warnings.append("metrics.enabled/metrics.path changes need a restart")
    api = attrs.evolve(new.api, enabled=old.api.enabled)
    if api != new.api:
        warnings.append("api.enabled changes need a restart")
    audit = new.audit if new.audit.enabled == old.audit.enabled else old.audit
    audit = attrs.evolve(audit, queue_size=old.audit.queue_size)
    if audit != new.audit:
        warnings.append("turning audit.path on or off and audit.queue_size changes need a restart")
    for warning in warnings:
        log.warn("reload: {problem}; keeping the running values", problem=warning)
    kept = attrs.evolve(new, server=old.server, database=old.database, metrics=metrics, api=api, audit=audit)
    return kept, warnings


def _apply_balancer(service: Any, old: BalancerConfig, new: BalancerConfig) -> None:
    """Periods and thresholds; a running loop picks up its new period after its next run."""
    if new == old:
        return
    pool = service.pool
    pool.unhealthy_threshold = new.unhealthy_threshold
    pool.healthy_threshold = new.healthy_threshold
    for name in pool.names():
        state = pool.health(name)
        state.unhealthy_threshold = max(1, new.unhealthy_threshold)
        state.healthy_threshold = max(1, new.healthy_threshold)
    health = service.health
    health.period = new.health_check_period
    health.timeout = new.health_timeout
    # HealthMonitor keeps one LoopingCall per backend; no public way to retime them.
    for loop in getattr(health, "_loops", {}).values():
        loop.interval = new.health_check_period
    for worker, period in ((service.deleter, new.cleanup_period), (service.usage, new.update_stats_period)):
        worker.period = period
        loop = getattr(worker, "_loop", None)
        if loop is not None:
            loop.interval = period


def _summary(
    old: Config, new: Config, built: dict, removed: list[str], strategy_changed: bool, warnings: list[str]
) -> str:
    running_before = {b.name for b in old.backends}
    parts = []
    if strategy_changed:
        parts.append(f"strategy {old.balancer.strategy} -> {new.balancer.strategy}")
    added = sorted(name for name in built if name not in running_before)
    changed = sorted(name for name in built if name in running_before)
    for sign, names in (("+", added), ("~", changed), ("-", removed)):
        if names:
            parts.append("backends " + " ".join(sign + name for name in names))
    if new.s3api.accounts != old.s3api.accounts:
        parts.append(f"accounts changed ({len(new.s3api.accounts)} now)")
    if new.s3api.credentials != old.s3api.credentials:
        parts.append(f"credentials changed ({len(new.s3api.credentials)} now)")
    elif new.s3api != old.s3api:
        parts.append("s3api changed")
    if new.virtual_buckets != old.virtual_buckets:
        parts.append(f"virtual buckets: {', '.join(b.name for b in new.virtual_buckets)}")
    if new.balancer != old.balancer and not (strategy_changed and _only_strategy(old, new)):
        parts.append("balancer settings changed")
    parts.extend(warnings)
    return "; ".join(parts) if parts else "no changes"


def _only_strategy(old: Config, new: Config) -> bool:
    return attrs.evolve(old.balancer, strategy=new.balancer.strategy) == new.balancer


def install_sighup(reloader: Reloader, reactor: Any = None) -> Optional[object]:
    """
    Reload on SIGHUP.  The handler only schedules the work on the reactor
    thread (a signal may arrive at any point of running code).  Returns the
    previous handler.
    """
    if reactor is None:
        from twisted.internet import reactor

    def run() -> Deferred:
        d = reloader.reload()
        d.addErrback(
            lambda failure: log.error(
                "reload on SIGHUP refused, keeping the running configuration: {error}",
                error=failure.getErrorMessage(),
            )
        )
        return d

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        reactor.callFromThread(run)

    return signal.signal(signal.SIGHUP, handler)
