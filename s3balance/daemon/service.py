"""
The daemon as a Twisted service tree.

    GatewayService (MultiService)
      |- HealthMonitor      LoopingCall per backend
      |- DeletionWorker     removes replaced/deleted backend copies, expired intents  } once per
      |- StaleUploadCleaner aborts multipart uploads idle too long                    } cluster (a
      |- UsageReconciler    stored usage := aggregate of the locations (hourly)        } lease each)
      |- UsageRefresher     this daemon's usage changes to the store, totals back
      |- OperationSync      this daemon's operation counts to the store
      |- DrainWatcher       the drains: drained backends get no new objects
      |- DrainMover         moves the objects off draining backends (once per cluster)
      |- ReplicaRepair      gives objects the copies their bucket wants (once per cluster)
      |- Scrubber           checks every copy now and then, replaces bad ones (once per cluster)
      |- LifecycleExpirer   applies the buckets' lifecycle rules (once per cluster)
      |- RebalanceWatcher   the rebalance's row (metrics, /status)
      |- ReplicaCensus      objects short of copies per replicated bucket (/status, admin API)
      |- RebalanceMover     evens out the backends' used fractions (once per cluster)
      |- PauseWatcher       the paused jobs: an elected job does not run while paused
      +- the listening port (opened in privilegedStartService)

Start-up checks that can fail (config, strategy name, database reachable and
migrated, port free) run before the reactor starts and stop the daemon with
one line naming the problem.  Stopping closes the port, gives in-flight
transfers C{server.shutdown_grace} seconds, then cuts the rest and stops the
store.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Generator
from types import FrameType
from typing import TYPE_CHECKING, Any, Optional, cast

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred, inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.backends.backend import Backend, make_http_client
from s3balance.backends.health import HealthMonitor
from s3balance.backends.operations import OperationCounter
from s3balance.backends.pool import BackendPool, make_backends
from s3balance.config import Config, ConfigError, ServerConfig, load_config
from s3balance.config.checks import check_config
from s3balance.daemon.buckets import sync_config_buckets
from s3balance.http.channel import S3Site
from s3balance.ops.cleanup import DeletionWorker, OperationSync, UsageRefresher
from s3balance.s3.gateway import Gateway
from s3balance.s3.resource import Root

if TYPE_CHECKING:
    from twisted.internet.ssl import CertificateOptions

    from s3balance.store.connector import MetadataStore

log = Logger()


# Seconds between two full aggregates of the usage (one daemon of the cluster).
USAGE_RECONCILE_PERIOD = 3600.0


class StartupError(Exception):
    """A problem found before serving; its message is one line for the operator."""


def tls_options(server: ServerConfig) -> CertificateOptions:
    from twisted.internet import ssl

    with open(server.tls_cert, "rb") as cert, open(server.tls_key, "rb") as key:
        return ssl.PrivateCertificate.loadPEM(cert.read() + b"\n" + key.read()).options()


def _settle_heap() -> None:
    """
    Move everything loaded at start (modules, SQLAlchemy's metadata and
    caches, the configuration) out of the garbage collector's sight: a full
    collection then only walks what requests allocate, not the whole
    program, so it neither costs CPU per request nor stalls the reactor.
    """
    gc.collect()
    gc.freeze()


def make_site(root: Root, gateway: Gateway, server: ServerConfig, reactor: Any) -> S3Site:
    """The HTTP site with C{server}'s timeouts and connection caps."""
    return S3Site(
        root,
        gateway,
        timeout=server.idle_timeout,
        read_timeout=server.read_timeout,
        write_timeout=server.write_timeout,
        max_connections=server.max_connections,
        max_connections_per_ip=server.max_connections_per_ip,
        reactor=reactor,
    )


class GatewayService(MultiService):
    def __init__(
        self, config: Config, store: Any, reactor: Any = None, config_path: str = "", worker_index: int = 0
    ) -> None:
        super().__init__()
        self.config_path = config_path
        self.worker_index = worker_index
        self.settle_heap = False
        if reactor is None:
            from twisted.internet import reactor
        from s3balance.placement.registry import make_strategy

        self.reactor = reactor
        self.config = config
        self.store = store
        self.http = make_http_client(reactor)
        balancer = config.balancer
        self.pool = BackendPool(
            make_backends(config, self.http, reactor), balancer.unhealthy_threshold, balancer.healthy_threshold
        )
        from s3balance.admin.api import AdminResource
        from s3balance.admin.target import ServiceAdminTarget
        from s3balance.metrics import Metrics, MetricsResource

        self.metrics: Any = Metrics() if config.metrics.enabled else None
        self.pool.metrics = self.metrics
        self.gateway = Gateway(config, store, self.pool, make_strategy(balancer.strategy), reactor, self.metrics)
        self.root = Root(self.gateway)
        if self.metrics is not None:
            self.metrics.watch_pool(self.pool, lambda: self.gateway.strategy.name)
            self.metrics.watch_buckets(lambda: self.gateway.bucket_usage)
            for name in self.pool.names():
                self.metrics.watch_backend(cast(Backend, self.pool.get(name)))  # a name of the pool's
            self.root.fixed[config.metrics.path.encode()] = MetricsResource(
                self.metrics, lambda: self.gateway.config.metrics.token
            )
        self.apply_rate_limits(config)
        self.audit_file: Any = None
        if config.audit.enabled:
            self._open_audit(config)
        self.reloader: Any = None
        self.admin_target = ServiceAdminTarget(self)
        if config.api.enabled:
            self.root.admin = AdminResource(self.admin_target, lambda: self.gateway.config.api.token)
        from s3balance.daemon.status import StatusResource

        self.root.fixed[b"/status"] = StatusResource(
            self.gateway, lambda: self.gateway.config.api.token if self.gateway.config.api.enabled else ""
        )
        self.site = make_site(self.root, self.gateway, config.server, reactor)
        self.health = HealthMonitor(self.pool, balancer.health_check_period, balancer.health_timeout, reactor)
        self.pool.set_backend_timeout(balancer.backend_timeout)
        self.operations = OperationCounter(store, reactor.seconds)
        self.pool.set_counter(self.operations)
        self._add_background_jobs(config, store, reactor, worker_index)
        self.supervisor: Any = None
        if config.server.workers > 1 and worker_index == 0:
            from s3balance.daemon.workers import WorkerSupervisor

            self.supervisor = WorkerSupervisor(config_path, config.server.workers, config.server.shutdown_grace, reactor)
            self.supervisor.setServiceParent(self)
        self.port: Optional[IListeningPort] = None

    def apply_rate_limits(self, config: Config) -> None:
        """The rate limits of C{config.s3api} (s3balance.s3.ratelimit), at start and on reload."""
        from s3balance.s3.ratelimit import limiter_for

        throttled = self.metrics.throttled if self.metrics is not None else None
        self.gateway.rate_limiter = limiter_for(config.s3api, self.reactor, throttled, self.gateway.rate_limiter)

    def _open_audit(self, config: Config) -> None:
        """The audit log (s3balance.s3.audit): its file opened now, its writer started with the service."""
        from s3balance.daemon.audit_file import AuditFile
        from s3balance.s3.audit import AuditTrail

        self.audit_file = AuditFile(config.audit.path, config.audit.queue_size, self.reactor, self.metrics)
        self.audit_file.setServiceParent(self)
        self.gateway.audit = AuditTrail(self.audit_file.write)

    def _add_background_jobs(self, config: Config, store: Any, reactor: Any, worker_index: int) -> None:
        """The periodic jobs (s3balance.ops.cleanup): cluster-wide ones elected by a lease, the rest per process."""
        from s3balance.ops.background import BackgroundMetrics, holder_id
        from s3balance.ops.cleanup import StaleUploadCleaner, UsageReconciler

        balancer = config.balancer
        jobs = BackgroundMetrics(self.metrics.registry) if self.metrics is not None else None
        # The same seat after a restart takes its leases back at once (holder_id).
        seat = f"{config.server.host}:{config.server.port}/{worker_index}" if config.server.port else None
        self.holder = holder_id(seat)
        lease = balancer.job_lease
        self.deleter = DeletionWorker(
            store, self.pool, balancer.cleanup_period, reactor, metrics=jobs, holder=self.holder, lease_seconds=lease
        )
        self.gateway.deleter = self.deleter
        self.stale_uploads = StaleUploadCleaner(
            store, balancer.cleanup_period, balancer.multipart_max_age, reactor, jobs, self.holder, deleter=self.deleter,
            lease_seconds=lease,
        )
        self.usage = UsageRefresher(
            store, self.pool, balancer.update_stats_period, reactor, jobs, on_bucket_usage=self.gateway.set_bucket_usage
        )
        self.usage_reconcile = UsageReconciler(
            store, USAGE_RECONCILE_PERIOD, reactor, jobs, self.holder, refresher=self.usage, lease_seconds=lease
        )
        self.operation_sync = OperationSync(self.operations, 5.0, reactor, jobs)
        # Drains (s3balance.ops.drain): every daemon watches them, one moves the objects.
        from s3balance.ops.drain import DrainMetrics, DrainMover, DrainWatcher

        self.drains = DrainWatcher(store, self.pool, 2.0, reactor, jobs)
        self.drain_metrics = DrainMetrics(self.metrics.registry, self.drains) if self.metrics is not None else None
        self.drain_mover = DrainMover(
            self.gateway, self.drains, 2.0, reactor, jobs, self.drain_metrics, self.holder, lease_seconds=lease
        )
        # Replicas (s3balance.ops.replicate, ops.scrub): async copies; the repair and the scrub, once per cluster.
        from s3balance.ops.replicate import ReplicaMetrics, ReplicaRepair
        from s3balance.ops.scrub import Scrubber

        copies = ReplicaMetrics(self.metrics.registry) if self.metrics is not None else None
        self.replica_repair = ReplicaRepair(
            self.gateway, balancer.replicate_period, reactor, jobs, self.holder, lease, replica_metrics=copies
        )
        self.gateway.replicas = self.replica_repair
        self.scrubber = Scrubber(self.gateway, reactor, jobs, self.holder, lease, replica_metrics=copies)
        # Lifecycle rules (s3balance.ops.lifecycle), applied once per cluster.
        from s3balance.ops.lifecycle import LifecycleExpirer, LifecycleMetrics

        expiries = LifecycleMetrics(self.metrics.registry) if self.metrics is not None else None
        self.lifecycle = LifecycleExpirer(self.gateway, reactor, jobs, self.holder, lease, lifecycle_metrics=expiries)
        for child in (
            self.health, self.deleter, self.stale_uploads, self.usage, self.usage_reconcile, self.operation_sync,
            self.drains, self.drain_mover, self.replica_repair, self.scrubber, self.lifecycle,
        ):
            child.setServiceParent(self)
        # The rebalance (s3balance.ops.rebalance): every daemon reads its row, one moves the objects.
        from s3balance.ops.rebalance import RebalanceMetrics, RebalanceMover, RebalanceWatcher

        self.rebalance_state = RebalanceWatcher(store, 5.0, reactor, jobs)
        rebalance_metrics = (
            RebalanceMetrics(self.metrics.registry, self.rebalance_state) if self.metrics is not None else None
        )
        self.rebalancer = RebalanceMover(
            self.gateway, self.rebalance_state, 2.0, reactor, jobs, rebalance_metrics, self.holder, lease
        )
        self.rebalance_state.setServiceParent(self)
        self.rebalancer.setServiceParent(self)
        from s3balance.ops.replica_census import ReplicaCensus

        self.replica_census = ReplicaCensus(self.gateway, 10.0, reactor, jobs)
        self.replica_census.setServiceParent(self)
        # Paused jobs (s3balance.ops.pauses): every elected child stops while its job is paused.
        from s3balance.daemon.status import StatusResource
        from s3balance.ops.pauses import PauseWatcher

        self.job_pauses = PauseWatcher(store, 2.0, reactor, jobs)
        self.job_pauses.setServiceParent(self)
        status_page = self.root.fixed.get(b"/status")
        if isinstance(status_page, StatusResource):
            status_page.job_pauses = self.job_pauses  # /status shows the paused jobs,
            status_page.rebalance = self.rebalance_state  # the rebalance
            status_page.replicas = self.replica_census  # and the objects short of copies

    @property
    def address(self) -> Any:
        return self.port.getHost() if self.port is not None else None

    def privilegedStartService(self) -> None:
        server = self.config.server
        try:
            if server.workers > 1:
                self.port = self._listen_shared(server)
            elif server.tls_cert:
                self.port = self.reactor.listenSSL(
                    server.port, self.site, tls_options(server), interface=server.host, backlog=1024
                )
            else:
                self.port = self.reactor.listenTCP(server.port, self.site, interface=server.host, backlog=1024)
        except CannotListenError as error:
            sys.stderr.write(f"s3balance: server.port: cannot listen on {server.host}:{server.port}: {error.socketError}\n")
            raise SystemExit(2) from None
        super().privilegedStartService()

    def _listen_shared(self, server: ServerConfig) -> IListeningPort:
        """A SO_REUSEPORT socket, one per worker process (see s3balance.daemon.workers)."""
        from twisted.internet.error import CannotListenError

        from s3balance.daemon.workers import reuseport_socket

        try:
            sock = reuseport_socket(server.host, server.port)
        except OSError as error:
            raise CannotListenError(server.host, server.port, error) from None
        factory: IProtocolFactory = self.site
        if server.tls_cert:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(tls_options(server), False, self.site)
        try:
            return self.reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
        finally:
            sock.close()  # the reactor holds its own descriptor

    def startService(self) -> None:
        # Children (health checks, cleaners) start once the store is up.
        self.running = 1
        self.gateway.ready = False
        d = self.store.start()
        d.addCallback(lambda _: sync_config_buckets(self.store, self.config))
        # Drained backends are out of placement before the first request.
        d.addCallback(lambda _: ensureDeferred(self.drains.run()))
        # Paused jobs stay paused across a restart: known before any job starts.
        d.addCallback(lambda _: ensureDeferred(self.job_pauses.run()))
        if self.reloader is not None:
            # At once, not when started: SIGHUP's default action ends the
            # process, and the port already listens.  A reload asked for
            # during the start waits for it (hold_until, below).
            from s3balance.daemon.reload import install_sighup

            install_sighup(self.reloader, self.reactor)
            if self.supervisor is not None:
                self._forward_sighup()

        def started(_: object) -> None:
            if self.metrics is not None and hasattr(self.store, "watch_statements"):
                self.metrics.watch_store(self.store)
            for child in self:
                child.startService()
            if self.settle_heap:
                _settle_heap()
            self.gateway.ready = True
            host = self.address
            log.info(
                "s3balance serving {count} virtual bucket(s) on {scheme}://{host}:{port} over {backends} backend(s), strategy {strategy}",
                scheme="https" if self.config.server.tls_cert else "http",
                count=len(self.config.virtual_buckets),
                host=host.host if host else "?",
                port=host.port if host else "?",
                backends=len(self.config.backends),
                strategy=self.gateway.strategy.name,
            )

        def failed(failure: Failure) -> None:
            log.failure("the metadata store did not start", failure)
            self.reactor.stop()

        d.addCallbacks(started, failed)
        if self.reloader is not None:
            self.reloader.hold_until(d)

    def _forward_sighup(self) -> None:
        """The workers reload their own config when the supervisor does."""
        import signal

        reload_here = signal.getsignal(signal.SIGHUP)
        supervisor = self.supervisor

        def forward(signum: int, frame: Optional[FrameType]) -> None:
            if callable(reload_here):
                reload_here(signum, frame)
            supervisor.signal_all(signal.SIGHUP)

        signal.signal(signal.SIGHUP, forward)

    @inlineCallbacks
    def stopService(self) -> Generator[Any, Any, None]:  # stopListening may give None
        if self.port is not None:
            yield self.port.stopListening()
        yield self._drain(self.config.server.shutdown_grace)
        yield MultiService.stopService(self)
        yield self.store.stop()

    @inlineCallbacks
    def _drain(self, grace: float) -> Generator[Deferred[Any], Any, None]:
        """Let in-flight requests finish for up to C{grace} seconds, then cut them."""
        waited = 0.0
        step = 0.1
        while self.gateway.in_flight and waited < grace:
            yield deferLater(self.reactor, step, lambda: None)
            waited += step
        for request in list(self.gateway.in_flight):
            log.warn("cutting request {id} at shutdown", id=request.request_id)
            transport = getattr(request.channel, "transport", None)
            if transport is not None:
                transport.abortConnection()
        yield self.http.closeCachedConnections()


def open_store(config: Config, reactor: Any = None, migrate_schema: bool = True) -> MetadataStore:
    """
    Build the metadata store and bring its schema up to date, blocking (this
    runs before the reactor starts).  Raises StartupError with one line.
    """
    from s3balance.store import schema_head
    from s3balance.store.connector import MetadataStore

    url = config.database.url
    if config.database.type == "sqlite":
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if config.database.auto_migrate and migrate_schema and not schema_head.is_current(url):
        # Alembic is loaded only when there is something to migrate.
        from s3balance.store import migrate

        try:
            migrate.upgrade(url)
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise StartupError(f"database: cannot open or migrate the {config.database.type} database: {first}") from None
    return MetadataStore(
        url,
        reactor=reactor,
        max_threads=config.database.max_open_conns,
        auto_migrate=False,
        deletion_grace=config.balancer.deletion_grace,
        statement_timeout=config.database.statement_timeout,
        connect_timeout=config.database.connect_timeout,
        request_timeout=config.database.request_timeout,
    )


def check_removed_backends(config: Config) -> None:
    """
    ConfigError naming a backend that is not configured but that objects are
    stored on (their reads would fail): drain a backend before removing it.
    A database this daemon cannot ask (not migrated yet) is not checked.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from s3balance.store.moves import removed_backend_message, unconfigured_backends_in_use_at

    try:
        in_use = unconfigured_backends_in_use_at(config.database.url, [backend.name for backend in config.backends])
    except SQLAlchemyError as error:
        log.warn("could not check for removed backends that hold objects: {error}", error=str(error).splitlines()[0])
        return
    if in_use:
        raise ConfigError(removed_backend_message(in_use[0]))


def build(config_path: str, reactor: Any = None, worker_index: int = 0) -> GatewayService:
    """Everything makeService does, raising ConfigError / StartupError."""
    from s3balance.placement.registry import make_strategy

    config = load_config(config_path)
    check_config(config)
    make_strategy(config.balancer.strategy)  # an unknown name is a config error, now
    store = open_store(config, reactor, migrate_schema=worker_index == 0)
    if worker_index == 0:
        check_removed_backends(config)
    from s3balance.daemon.reload import Reloader

    service = GatewayService(config, store, reactor, config_path, worker_index)
    service.settle_heap = True  # a daemon of its own (not a test's in-process service)
    service.reloader = service.admin_target.reloader = Reloader(service, config_path)
    return service


def makeService(config_path: str, reactor: Any = None, worker_index: int = 0) -> GatewayService:
    """
    The service for twistd and the .tac file.  A bad config or an unreachable
    database ends the process with one line on stderr and exit status 2.
    """
    try:
        return build(config_path, reactor, worker_index)
    except (ConfigError, StartupError) as error:
        sys.stderr.write(f"s3balance: {error}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None
