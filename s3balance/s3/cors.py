"""
Cross-origin resource sharing for browsers (C{s3api.cors}).

A page served from another origin may call the endpoint with C{fetch} or
C{XMLHttpRequest}, typically with presigned URLs, only if the answers say
so: a preflight (C{OPTIONS} with C{Origin} and
C{Access-Control-Request-Method}) is answered without authentication, the
way S3 does, and every other answer to a request with an allowed C{Origin}
carries C{Access-Control-Allow-Origin} and C{Access-Control-Expose-Headers}.
One policy for the whole endpoint; S3's per-bucket C{?cors} configuration
API stays C{NotImplemented}.

In redirect mode the browser follows a GET's 302 to the backend, whose own
CORS rules then apply to the final answer.
"""

from __future__ import annotations

import functools
import re
from typing import Optional

from s3balance.config import CORSConfig
from s3balance.errors import S3Error

NOT_ENABLED = "CORSResponse: CORS is not enabled for this bucket."
NOT_ALLOWED = (
    "CORSResponse: This CORS request is not allowed. This is usually because the evaluation of Origin, "
    "request method / Access-Control-Request-Method or Access-Control-Request-Headers are not allowed "
    "by the resource's CORS spec."
)


@functools.lru_cache(maxsize=256)
def _pattern(allowed: str) -> re.Pattern[str]:
    """An origin or header name with C{*} wildcards, matched case-insensitively."""
    return re.compile(".*".join(re.escape(part) for part in allowed.split("*")), re.IGNORECASE)


def allowed_origin(cors: CORSConfig, origin: str) -> Optional[str]:
    """What C{Access-Control-Allow-Origin} says to C{origin}: C{*}, the origin itself, or None."""
    for allowed in cors.allowed_origins:
        if allowed == "*":
            return "*"
        if _pattern(allowed).fullmatch(origin):
            return origin
    return None


def answer_headers(cors: CORSConfig, origin: str) -> list[tuple[bytes, bytes]]:
    """The Access-Control-* headers of an answer to a request from C{origin}."""
    # Caches must keep answers to different origins apart.
    headers = [(b"vary", b"Origin")]
    value = allowed_origin(cors, origin)
    if value is None:
        return headers
    headers.append((b"access-control-allow-origin", value.encode("latin-1")))
    if cors.expose_headers:
        headers.append((b"access-control-expose-headers", ", ".join(cors.expose_headers).encode("latin-1")))
    return headers


def preflight(
    cors: CORSConfig, origin: Optional[str], method: Optional[str], requested: Optional[str]
) -> dict[str, str]:
    """
    The headers of the answer to a preflight; raises L{S3Error} (as S3:
    400 without C{Origin} or C{Access-Control-Request-Method}, 403 when the
    policy does not allow it).
    """
    if not cors.enabled:
        raise S3Error("AccessForbidden", NOT_ENABLED)
    if not origin:
        raise S3Error("BadRequest", "Insufficient information. Origin request header needed.")
    if not method:
        raise S3Error("BadRequest", "Invalid Access-Control-Request-Method: null")
    value = allowed_origin(cors, origin)
    if value is None or method.upper() not in cors.allowed_methods:
        raise S3Error("AccessForbidden", NOT_ALLOWED)
    names = [name.strip() for name in (requested or "").split(",") if name.strip()]
    for name in names:
        if not any(_pattern(allowed).fullmatch(name) for allowed in cors.allowed_headers):
            raise S3Error("AccessForbidden", NOT_ALLOWED)
    headers = {
        "Access-Control-Allow-Origin": value,
        "Access-Control-Allow-Methods": ", ".join(cors.allowed_methods),
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    if names:
        headers["Access-Control-Allow-Headers"] = ", ".join(names)
    if cors.expose_headers:
        headers["Access-Control-Expose-Headers"] = ", ".join(cors.expose_headers)
    if cors.max_age:
        headers["Access-Control-Max-Age"] = str(cors.max_age)
    return headers
