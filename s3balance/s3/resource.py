"""
The resource tree of the daemon's one HTTP port.

Everything is S3 except a few fixed paths of our own (C{/health}, the
metrics path, and later the admin API).  Those are matched exactly, and
never for a virtual-host style request, whose whole path is an object key.
"""

from __future__ import annotations

import json

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from s3balance.s3.routing import bucket_from_host


class S3Resource(Resource):
    """Every S3 request; the operation is chosen by the gateway."""

    isLeaf = True

    def __init__(self, gateway) -> None:
        super().__init__()
        self.gateway = gateway

    def render(self, request):
        self.gateway.handle(request)
        return NOT_DONE_YET


class HealthResource(Resource):
    """C{GET /health}: JSON with per-backend state, 200 when objects can be stored and read."""

    isLeaf = True

    def __init__(self, gateway) -> None:
        super().__init__()
        self.gateway = gateway

    def render_GET(self, request) -> bytes:
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
            backend = pool.get(name)
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
        request.setResponseCode(200 if writable else 503)
        return json.dumps(
            {"status": status, "strategy": self.gateway.strategy.name, "backends": backends},
            indent=1,
            sort_keys=True,
        ).encode()

    render_HEAD = render_GET


class Root(Resource):
    """Dispatches the fixed paths, and everything else to S3."""

    def __init__(self, gateway) -> None:
        super().__init__()
        self.gateway = gateway
        self.s3 = S3Resource(gateway)
        self.fixed: dict[bytes, Resource] = {b"/health": HealthResource(gateway)}
        self.admin: Resource | None = None

    def fixed_resource(self, request):
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

    def getChildWithDefault(self, path, request):
        return self.fixed_resource(request) or self.s3

    def render(self, request):
        return self.s3.render(request)
