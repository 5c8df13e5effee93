"""
What the handlers of S3 operations are, and what they need of the gateway.

A handler takes C{(gateway, request, call)}: the L{GatewayLike} below (in
the daemon, L{s3balance.s3.gateway.Gateway}; in unit tests, whatever fake
has these parts), the L{s3balance.s3.request.S3Request} it answers, and the
routed, authenticated L{s3balance.s3.call.S3Call}.  Typed through this
protocol, handler modules need not import the gateway (which imports them;
tests/test_layers.py counts imports for type checking too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    from s3balance.backends.pool import BackendPool
    from s3balance.config.schema import Config, Credential
    from s3balance.errors import S3Error
    from s3balance.placement.interfaces import IStrategy
    from s3balance.s3.access import BucketAccess
    from s3balance.s3.call import S3Call
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import IMetadataStore


class GatewayLike(Protocol):
    """The parts of L{s3balance.s3.gateway.Gateway} that handlers and uploads use."""

    config: Config
    store: IMetadataStore
    pool: BackendPool
    strategy: IStrategy
    reactor: Any  # the Twisted reactor: IReactorTime, IReactorThreads
    clock: Callable[[], float]

    async def require_bucket(
        self, call: S3Call, bucket: Optional[str] = None, action: Optional[str] = None, key: Optional[str] = None
    ) -> BucketAccess: ...

    def may_see_bucket(self, credential: Optional[Credential], bucket: str) -> bool: ...

    def lookup_credential(self, access_key: str) -> Optional[Credential]: ...

    def authorize(self, call: S3Call) -> None: ...

    def new_real_key(self, bucket: str) -> str: ...

    def kick_deleter(self, replaced: bool = False) -> None: ...

    def answer_error(self, request: S3Request, error: S3Error) -> None: ...

    def answer_xml(self, request: S3Request, body: bytes, status: int = 200) -> None: ...

    def answer_body(self, request: S3Request, body: bytes, content_type: bytes, status: int = 200) -> None: ...

    def answer_empty(
        self, request: S3Request, status: int = 200, headers: Optional[Mapping[str, str]] = None
    ) -> None: ...


# One S3 operation: answers (or raises an S3Error for) C{call} on C{request}.
Handler = Callable[["GatewayLike", "S3Request", "S3Call"], Awaitable[None]]
