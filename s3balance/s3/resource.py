"""
The resource tree of the daemon's one HTTP port.

Everything is S3 except a few fixed paths of our own (C{/health}, the
metrics path, C{/status} and the admin API under C{/admin/}).  Those are
matched exactly, and never for a virtual-host style request, whose whole
path is an object key.

Our own paths are open to anyone who reaches the port, so their request
bodies are bounded before anything is read: a resource's C{max_body}
(L{MAX_FIXED_BODY} when it has none), and a resource with a token may
define C{refuse_before_body(request) -> bytes | None}, which the server
calls as soon as the headers are in (L{Root.answer_before_body}).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional, Protocol, cast

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from s3balance.s3.routing import bucket_from_host

if TYPE_CHECKING:
    from s3balance.backends.backend import Backend
    from s3balance.backends.pool import BackendPool
    from s3balance.config.schema import Config
    from s3balance.placement.interfaces import IStrategy
    from s3balance.store.interfaces import IMetadataStore

# The largest request body our own paths read, unless their resource says
# otherwise (the admin API takes small JSON documents): none of them needs one.
MAX_FIXED_BODY = 4 * 1024


class ServedGateway(Protocol):
    """
    What the resource tree uses of L{s3balance.s3.gateway.Gateway} (not
    imported: the gateway's module imports L{s3balance.s3.request}, which
    imports this one).
    """

    config: Config
    store: IMetadataStore
    pool: BackendPool
    strategy: IStrategy
    ready: bool

    def handle(self, request: Any) -> None: ...


class S3Resource(Resource):
    """Every S3 request; the operation is chosen by the gateway."""

    isLeaf = True

    def __init__(self, gateway: ServedGateway) -> None:
        super().__init__()
        self.gateway = gateway

    def render(self, request: Request) -> int:
        self.gateway.handle(request)
        return NOT_DONE_YET


class HealthResource(Resource):
    """C{GET /health}: JSON with per-backend state, 200 when objects can be stored and read."""

    isLeaf = True

    def __init__(self, gateway: ServedGateway) -> None:
        super().__init__()
        self.gateway = gateway

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if not self.gateway.ready:
            # Requests are queued until the store is up, but a load balancer
            # should not count this one in yet.
            request.setResponseCode(503)
            request.setHeader(b"retry-after", b"1")
            return json.dumps({"status": "starting", "strategy": self.gateway.strategy.name, "backends": {}}).encode()
        pool = self.gateway.pool
        backends = {}
        for name in pool.names():
            backend = cast("Backend", pool.get(name))  # one of pool.names()
            used, objects = pool.usage(name)
            state = pool.health(name).as_dict()
            state.update(
                enabled=backend.config.enabled and name not in pool.disabled,
                used_bytes=used,
                objects=objects,
                max_size=backend.config.max_size,
                reserved_bytes=pool.reserved(name),
            )
            backends[name] = state
        writable = bool(pool.candidates(0))
        up = sum(1 for state in backends.values() if state["up"])
        read_only = any(state["up"] and not state["writable"] for state in backends.values())
        status = "ok" if up == len(backends) and not read_only else ("degraded" if writable else "down")
        # The metadata database: nothing is stored or read without it (store/probe.py).
        probe = getattr(self.gateway.store, "probe", None)
        database = probe.state() if probe is not None else {"up": True, "error": None}
        if not database["up"]:
            status, writable = "down", False
        request.setResponseCode(200 if writable else 503)
        return json.dumps(
            {"status": status, "strategy": self.gateway.strategy.name, "backends": backends, "database": database},
            indent=1,
            sort_keys=True,
        ).encode()

    render_HEAD = render_GET


class Root(Resource):
    """Dispatches the fixed paths, and everything else to S3."""

    def __init__(self, gateway: ServedGateway) -> None:
        super().__init__()
        self.gateway = gateway
        self.s3 = S3Resource(gateway)
        self.fixed: dict[bytes, Resource] = {b"/health": HealthResource(gateway)}
        self.admin: Resource | None = None

    def fixed_resource(self, request: Request) -> Optional[Resource]:
        """The resource of one of our own paths, or None for an S3 request."""
        raw_path = request.uri.split(b"?", 1)[0]
        resource = self.fixed.get(raw_path)
        if resource is None and self.admin is not None and (raw_path == b"/admin" or raw_path.startswith(b"/admin/")):
            resource = self.admin
        if resource is None:
            return None
        domains = self.gateway.config.s3api.virtual_host_domains
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        if domains and bucket_from_host(host, domains) is not None:
            return None
        return resource

    def answer_before_body(self, resource: Resource, request: Request, length: int | None) -> bytes | None:
        """
        For a request to our own C{resource} whose headers announce a body
        (C{length} None: chunked): the answer to send without reading it
        (the response code and headers set on C{request}), or None to read
        it.  A refusal (a missing token) comes first, then a body over the
        resource's limit.
        """
        refuse = getattr(resource, "refuse_before_body", None)
        if refuse is not None:
            answer = refuse(request)
            if answer is not None:
                return answer
        if length is not None and length > body_limit(resource):
            return self.too_large(request)
        return None

    def too_large(self, request: Request) -> bytes:
        """413 for a body over one of our own resources' limit."""
        request.setResponseCode(413)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps({"error": "too_large", "message": "the request body is too large"}).encode()

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        return self.fixed_resource(request) or self.s3

    def render(self, request: Request) -> int:
        return self.s3.render(request)


def body_limit(resource: Resource) -> int:
    """The largest request body one of our own resources reads."""
    return getattr(resource, "max_body", MAX_FIXED_BODY)
