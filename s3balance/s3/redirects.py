"""
Redirect mode (C{s3api.proxy_mode: false}): which GETs are answered with a
302 to the backend, and what the presigned URL signs.

A 302 only saves work when the client follows it, and most S3 SDKs do not:
botocore (boto3, the aws cli), minio-go (restic), aws-sdk-js v3 and aws-c-s3
hand the 302 to the caller as an error.  So a GET is redirected only when
its client is known to follow:

  - a presigned (query-signed) request: browsers, curl -L, urllib, wget and
    every other HTTP client that fetches a URL follow redirects;
  - an anonymous request, for the same reason;
  - a header-signed request by a credential marked C{follows_redirects: true}
    (C{s3api.credentials}), or whose User-Agent has a product token starting
    with one of C{s3api.redirect_user_agents} (e.g. C{rclone/}, C{s5cmd/}).

The credential flag is the dependable switch: the operator knows which
program holds which key.  The User-Agent list serves one key shared by
several programs; a client that lies in its User-Agent only gets itself a
302 it may not follow.  Every other GET is proxied, as in proxy mode.

A client that follows a 302 sends the redirected request with the headers
of the first one (Go's net/http, libcurl, aws-sdk-cpp/pyarrow).  An
C{x-amz-*} header outside the presigned URL's SignedHeaders is refused by S3
and SeaweedFS, so every C{x-amz-*} header the client sent is signed into the
URL (see L{signed_headers}).
"""

from __future__ import annotations

import calendar
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3balance.config.schema import S3APIConfig
    from s3balance.s3.call import S3Call

_FORCE_PROXY = ("1", "true", "yes")

# Not signed into the redirect URL: both describe the client's own signature
# to us (its date and payload hash), which S3 and SeaweedFS accept unsigned
# on a presigned request; signing the client's x-amz-date would put a second,
# older request date beside the URL's X-Amz-Date.
_UNSIGNED = frozenset({"x-amz-date", "x-amz-content-sha256", "x-amz-security-token"})


def proxy_forced(call: S3Call) -> bool:
    """The client asked for the bytes through us (C{x-s3balance-proxy: true} or C{?s3balance-proxy=true})."""
    forced = call.header("x-s3balance-proxy") or call.query.get("s3balance-proxy")
    return (forced or "").lower() in _FORCE_PROXY


def query_signed(call: S3Call) -> bool:
    """Whether C{call} was authenticated by its query (a presigned URL, SigV4 or SigV2)."""
    # Only one mechanism per request gets through authentication, so on an
    # authenticated call these parameters name the one it used.
    return call.auth is not None and ("X-Amz-Signature" in call.query or "Signature" in call.query)


def follows_redirects(s3api: S3APIConfig, call: S3Call) -> bool:
    """Whether the client of C{call} is known to follow a GET's 302 (see the module docstring)."""
    if call.auth is None or query_signed(call):
        return True
    credential = call.credential
    if credential is not None and credential.follows_redirects:
        return True
    return user_agent_matches(call.header("user-agent") or "", s3api.redirect_user_agents)


def user_agent_matches(user_agent: str, products: tuple[str, ...]) -> bool:
    """
    Whether a product token of C{user_agent} (C{name/version}, separated by
    spaces) starts with one of C{products}, ignoring case:
    C{"aws-sdk-go/1.44 (go1.21; linux) s5cmd/v2.2"} matches C{"s5cmd/"}.
    """
    if not products:
        return False
    wanted = tuple(product.lower() for product in products)
    return any(token.startswith(wanted) for token in user_agent.lower().split())


def signed_headers(call: S3Call) -> dict[str, str]:
    """
    The C{x-amz-*} headers the client sent (as headers, not hoisted from a
    presigned URL's query: those stay in the client's URL, not in what it
    re-sends), to sign into the redirect URL.
    """
    hoisted = {name.lower() for name in call.query}
    return {
        name: ",".join(values)
        for name, values in call.headers.items()
        if name.startswith("x-amz-") and name not in _UNSIGNED and name not in hoisted
    }


def expiry(redirect_expiry: int, call: S3Call, now: float) -> int:
    """
    Seconds the redirect URL stays valid: C{s3api.redirect_expiry}, but never
    beyond the presigned URL the client came with (its X-Amz-Date plus
    X-Amz-Expires, or SigV2's Expires, all verified by then): a link that
    expires must not buy a longer-lived one on the backend.
    """
    if not query_signed(call):
        return redirect_expiry
    try:
        if "X-Amz-Signature" in call.query:
            start = calendar.timegm(time.strptime(call.query["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
            left = start + int(call.query["X-Amz-Expires"]) - now
        else:
            left = int(call.query["Expires"]) - now
    except (KeyError, ValueError):
        return redirect_expiry
    return max(1, min(redirect_expiry, int(left)))
