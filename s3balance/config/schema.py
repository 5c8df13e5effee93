"""The configuration's value objects: frozen, validated, secrets hidden in their repr."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import field, frozen

from s3balance.config.dsn import _mask_dsn, dsn_to_url

if TYPE_CHECKING:
    from s3balance.s3.public_access_block import PublicAccessBlock


def _hide(value: object) -> str:
    return "'***'" if value else "''"


# ---------------------------------------------------------------------------
# Value classes
# ---------------------------------------------------------------------------


@frozen
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    # A request's line and headers must arrive within read_timeout of its
    # first byte; a body that moves no byte for read_timeout (while we are
    # reading it) is answered RequestTimeout.
    read_timeout: float = 30.0
    # An answer the client takes no byte of for write_timeout is cut off.
    # Both are no-progress timeouts, never a whole-transfer limit.
    write_timeout: float = 60.0
    # Connection inactivity timeout (between requests), never a whole-transfer timeout.
    idle_timeout: float = 60.0
    # Open client connections, in all and from one address; more are refused.
    max_connections: int = 4096
    max_connections_per_ip: int = 1024
    data_dir: str = "data"
    # Seconds in-flight transfers get to finish when the service stops.
    shutdown_grace: float = 30.0
    # PEM files; when both are set the port speaks HTTPS.
    tls_cert: str = ""
    tls_key: str = ""
    # Processes serving the port (SO_REUSEPORT), all on one database.
    workers: int = 1


@frozen
class DatabaseConfig:
    type: str = "sqlite"
    dsn: str = field(default="data/s3-balance.db", repr=lambda dsn: repr(_mask_dsn(dsn)))
    max_open_conns: int = 25
    max_idle_conns: int = 5
    conn_max_lifetime: int = 300
    log_level: str = "warn"
    auto_migrate: bool = True
    # Seconds; 0 = none.  The server ends a statement that runs longer
    # (PostgreSQL statement_timeout, MariaDB max_statement_time; on SQLite
    # the wait for a lock); connecting gives up after connect_timeout; a
    # request that waits longer for one answer of the store gets 503.
    statement_timeout: float = 10.0
    connect_timeout: float = 5.0
    request_timeout: float = 10.0

    @property
    def url(self) -> str:
        """The SQLAlchemy URL for ``dsn`` (password included: never log it)."""
        return dsn_to_url(self.type, self.dsn)


@frozen
class OperationLimits:
    """Per-backend caps on S3 operations of class A (writes) and B (reads); 0 = none."""

    type_a: int = 0
    type_b: int = 0


@frozen
class BackendConfig:
    """One real bucket on a backend (``virtual: false`` in the ``buckets`` list)."""

    name: str
    endpoint: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=_hide)
    max_size: int | None = None
    weight: int = 1
    enabled: bool = True
    path_style: bool = False
    use_ssl: bool = True
    operation_limits: OperationLimits = OperationLimits()
    custom_host: str = ""
    remove_bucket: bool = False
    # The real bucket has Object Lock enabled: s3balance locks the copies of
    # locked versions there too (s3balance.backends.retention).
    object_lock: bool = False

    @property
    def endpoint_url(self) -> str:
        """Full endpoint URL: AWS's regional endpoint when ``endpoint`` is empty."""
        scheme = "https" if self.use_ssl else "http"
        if not self.endpoint:
            return f"https://s3.{self.region}.amazonaws.com"
        if "://" in self.endpoint:
            return self.endpoint.rstrip("/")
        return f"{scheme}://{self.endpoint.rstrip('/')}"


@frozen
class BucketQuota:
    """
    A virtual bucket's quota (``quota:``), enforced by the metadata database
    for every daemon on it: at most ``max_size`` bytes and ``max_objects``
    objects (None: no limit on that count).  ``key`` is where the config
    sets it (``buckets[2].quota``), for messages.
    """

    max_size: int | None = None
    max_objects: int | None = None
    key: str = field(default="", eq=False)


@frozen
class VirtualBucketConfig:
    """
    A bucket clients see (``virtual: true``); ``max_size`` is what it reports
    (Go-compatible, not enforced), ``quota`` what it may hold (enforced).
    """

    name: str
    max_size: int | None = None
    quota: BucketQuota | None = None
    # Copies of each object on distinct backends, and whether a write waits
    # for all of them ("sync") or for the first ("async"); None: the
    # balancer's replicas / replication.  ``key`` is where the config names
    # the bucket (``buckets[2]``), for messages.
    replicas: int | None = None
    replication: str | None = None
    # The account id owning it (None: s3api.default_owner).
    owner: str | None = None
    # Its ACL, a canned ACL's name (None: private); PutBucketAcl cannot
    # change it (s3balance.s3.access.bucket_acl).
    acl: str | None = None
    # Its bucket policy (the document as JSON text, checked at load; None:
    # none) and Block Public Access flags (None: none): the configuration
    # decides them, PutBucketPolicy and PutPublicAccessBlock are refused.
    policy: str | None = None
    public_access_block: PublicAccessBlock | None = None
    # Its versioning status, "Enabled" or "Suspended" (None: never
    # versioned); PutBucketVersioning is refused.  Written to its row at
    # start and reload, where the store's writes read it.
    versioning: str | None = None
    key: str = field(default="", eq=False)


@frozen
class BalancerConfig:
    strategy: str = "least-space"
    health_check_period: float = 30.0
    update_stats_period: float = 60.0
    retry_attempts: int = 3
    retry_delay: float = 1.0
    health_timeout: float = 5.0
    # A backend that moves no byte for this long while we wait on it is cut
    # off (stalled uploads, downloads and answers); never a whole-transfer limit.
    backend_timeout: float = 60.0
    # Replaced and deleted objects stay on their backend this long, so reads
    # that started before the change are not cut off.
    deletion_grace: float = 30.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2
    multipart_max_age: float = 86400.0
    cleanup_period: float = 60.0
    # Cluster-wide background jobs (s3balance.ops.background): the length of
    # the lease that elects the daemon running each one, renewed every third
    # of it; a daemon that dies holding one delays its job this long at most.
    job_lease: float = 30.0
    # Draining a backend (s3balance.ops.drain): bytes per second moved when a
    # drain names no rate of its own (0: unlimited), and objects moved at once.
    drain_rate: int = 0
    drain_concurrency: int = 2
    # Replicas (s3balance.ops.replicate): the copies of each object of a
    # bucket that names none, and when a write is acknowledged ("sync": all
    # copies stored; "async": the first, the rest copied in the background).
    # A backend down for replica_repair_after seconds no longer counts: the
    # objects it held get a copy elsewhere.  The replicator looks for objects
    # short of copies every replicate_period seconds.
    replicas: int = 1
    replication: str = "sync"
    replica_repair_after: float = 600.0
    replicate_period: float = 60.0
    # Scrub (s3balance.ops.scrub): a pass over every copy every scrub_period
    # seconds (0: never), at most scrub_rate objects a second, HEAD only or
    # (scrub_read) reading the bytes back.
    scrub_period: float = 0.0
    scrub_rate: float = 10.0
    scrub_read: bool = False
    # Lifecycle (s3balance.ops.lifecycle): the buckets' lifecycle rules are
    # applied every lifecycle_period seconds (0: never), at most
    # lifecycle_rate objects (and uploads) a second.
    lifecycle_period: float = 3600.0
    lifecycle_rate: float = 100.0


@frozen
class MetricsConfig:
    enabled: bool = True
    path: str = "/metrics"
    token: str = field(default="", repr=_hide)
    # Accepted for Go compatibility; metrics are served on the main port.
    port: int | None = None


@frozen
class RateLimit:
    """
    Token buckets (``rate_limit``): requests per second and body bytes per
    second (0: no limit), each with a burst (0: one second's worth, at
    least one request).
    """

    requests_per_second: float = 0.0
    burst: int = 0
    bytes_per_second: int = 0
    bytes_burst: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.requests_per_second or self.bytes_per_second)

    @property
    def request_burst(self) -> float:
        return float(self.burst or max(1.0, self.requests_per_second))

    @property
    def byte_burst(self) -> float:
        return float(self.bytes_burst or self.bytes_per_second)


@frozen
class RateLimitsConfig:
    """
    ``s3api.rate_limits``: the limit of every credential without a
    ``rate_limit`` of its own, the limit of each client address, and how
    many client addresses are remembered at most.
    """

    per_credential: RateLimit = RateLimit()
    per_client: RateLimit = RateLimit()
    max_clients: int = 100000


# The account of credentials that name none, when the configuration sets no
# s3api.default_account: what every key pair was before accounts existed.
IMPLICIT_ACCOUNT_ID = "000000000000"
IMPLICIT_ACCOUNT_NAME = "s3balance"


@frozen
class Account:
    """
    An account (``s3api.accounts``): owns buckets, holds credentials.  ``id``
    is 12 digits, as an AWS account id: the Owner/ID of its buckets and
    objects, the grantee ID of ACL grants and the account of policy
    Principals (``arn:aws:iam::<id>:root``) all name it.
    """

    id: str
    display_name: str


@frozen
class Credential:
    """
    A client key pair; ``buckets`` None means every virtual bucket.  It acts
    as its ``account`` (the account id); an ``admin`` credential may do
    anything on every account's buckets.
    """

    access_key: str
    secret_key: str = field(repr=_hide)
    buckets: tuple[str, ...] | None = None
    read_only: bool = False
    account: str = IMPLICIT_ACCOUNT_ID
    admin: bool = False
    # Redirect mode: the client behind this key follows a GET's 302 to the backend.
    follows_redirects: bool = False
    # Its own rate limit (None: s3api.rate_limits.per_credential).
    rate_limit: RateLimit | None = None
    # May remove or weaken GOVERNANCE Object Lock retention with the header
    # x-amz-bypass-governance-retention: true (s3balance.s3.object_lock).
    bypass_governance_retention: bool = False


CORS_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
# Response headers a browser script may read besides the CORS-safelisted ones:
# what S3 clients in browsers (multipart uploaders need ETag) look at.
CORS_EXPOSE_HEADERS = (
    "ETag",
    "x-amz-request-id",
    "x-amz-version-id",
    "x-amz-delete-marker",
    "Content-Range",
    "Accept-Ranges",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
)


@frozen
class CORSConfig:
    """
    Cross-origin access for browsers (``s3api.cors``), one policy for every
    bucket.  No ``allowed_origins``: CORS is off (preflights are refused and
    no Access-Control-* header is sent), as on S3 until a bucket has a rule.
    """

    allowed_origins: tuple[str, ...] = ()
    allowed_methods: tuple[str, ...] = CORS_METHODS
    allowed_headers: tuple[str, ...] = ("*",)
    expose_headers: tuple[str, ...] = CORS_EXPOSE_HEADERS
    max_age: int = 3600

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_origins)


@frozen
class S3APIConfig:
    access_key: str = ""
    secret_key: str = field(default="", repr=_hide)
    credentials: tuple[Credential, ...] = ()
    virtual_host: bool = False
    virtual_host_domains: tuple[str, ...] = ()
    proxy_mode: bool = True
    auth_required: bool = True
    # AWS Signature Version 2 (header and presigned URLs) besides SigV4;
    # off, SigV2 requests are refused as by an S3 region that only takes SigV4.
    sigv2: bool = True
    host: str = ""
    region: str = "us-east-1"
    allow_create_bucket: bool = True
    redirect_expiry: int = 900
    # Redirect mode: header-signed GETs whose User-Agent has a product token
    # starting with one of these (case-insensitive) are redirected, not proxied.
    redirect_user_agents: tuple[str, ...] = ()
    # CopyObject of a larger source goes part by part (S3 allows 5 GiB per PUT).
    multipart_copy_threshold: int = 5 * 1024**3
    cors: CORSConfig = CORSConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    # Every account (the implicit one included when default_account names
    # no configured account); credentials without an account belong to
    # default_account; buckets without a recorded owner (configured ones,
    # buckets older than accounts) are default_owner's.
    accounts: tuple[Account, ...] = (Account(IMPLICIT_ACCOUNT_ID, IMPLICIT_ACCOUNT_NAME),)
    default_account: str = IMPLICIT_ACCOUNT_ID
    default_owner: str = IMPLICIT_ACCOUNT_ID
    # Block Public Access for every bucket, all four flags (as S3's
    # account-level setting): added to each bucket's own.
    block_public_access: bool = False

    def account(self, account_id: str) -> Account | None:
        for account in self.accounts:
            if account.id == account_id:
                return account
        return None

    @property
    def rate_limited(self) -> bool:
        """Whether any rate limit is configured."""
        limits = self.rate_limits
        return (
            limits.per_credential.enabled
            or limits.per_client.enabled
            or any(c.rate_limit is not None and c.rate_limit.enabled for c in self.credentials)
        )


@frozen
class APIConfig:
    enabled: bool = False
    token: str = field(default="", repr=_hide)


@frozen
class AuditConfig:
    """
    The audit log (``audit``): one JSON line per request, to ``path``
    ("-": standard output; "": off).  ``queue_size`` lines may wait for the
    writer thread; more are dropped and counted.
    """

    path: str = ""
    queue_size: int = 10000

    @property
    def enabled(self) -> bool:
        return bool(self.path)


@frozen
class Config:
    server: ServerConfig
    database: DatabaseConfig
    backends: tuple[BackendConfig, ...]
    virtual_buckets: tuple[VirtualBucketConfig, ...]
    balancer: BalancerConfig
    metrics: MetricsConfig
    s3api: S3APIConfig
    api: APIConfig
    audit: AuditConfig = AuditConfig()

    def backend(self, name: str) -> BackendConfig | None:
        for backend in self.backends:
            if backend.name == name:
                return backend
        return None

    def replication_of(self, bucket: str) -> tuple[int, str]:
        """The copies each object of C{bucket} wants and the replication mode (its own or the balancer's)."""
        virtual = self.virtual_bucket(bucket)
        replicas = virtual.replicas if virtual is not None and virtual.replicas is not None else self.balancer.replicas
        mode = virtual.replication if virtual is not None and virtual.replication else self.balancer.replication
        return replicas, mode

    def virtual_bucket(self, name: str) -> VirtualBucketConfig | None:
        for bucket in self.virtual_buckets:
            if bucket.name == name:
                return bucket
        return None
