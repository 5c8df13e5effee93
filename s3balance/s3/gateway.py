"""
The request path of the S3 face, top to bottom:

    route -> authenticate -> (look up or place) -> backend -> store -> answer

L{Gateway.prepare} does the first two as soon as the headers are in (see
L{s3balance.s3.request}); L{Gateway.handle} runs the operation's handler once
the request is processed.  Handlers live in one module per group
(L{s3balance.s3.objects}, L{s3balance.s3.buckets}, L{s3balance.s3.upload}) and
never import each other; what they share is here or a layer down.

Over 500 lines: the steps every request takes (authenticate, authorize,
find the bucket, start the body, dispatch), in the order they run; the
operations themselves are elsewhere.
"""

from __future__ import annotations

import functools
import hmac
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Optional, cast

import attr
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.auth.mechanism import authenticate
from s3balance.auth.sigv4 import SigV4Request
from s3balance.errors import S3Error
from s3balance.s3 import access, acl, cors, limits, routing, sse, tagging, unkept
from s3balance.s3.call import S3Call
from s3balance.s3.handler_types import GatewayLike, Handler
from s3balance.store.interfaces import StoreUnavailable

if TYPE_CHECKING:
    from s3balance.backends.pool import BackendPool
    from s3balance.config.schema import Config, Credential
    from s3balance.metrics import Metrics
    from s3balance.placement.interfaces import IStrategy
    from s3balance.s3.request import BodySink, S3Request
    from s3balance.s3.streamed_body import StreamedBody
    from s3balance.store.interfaces import BucketUsage, IMetadataStore

log = Logger()

READ_OPERATIONS = frozenset(
    {
        "ListBuckets",
        "HeadBucket",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "GetBucketLocation",
        "GetBucketVersioning",
        "GetBucketAcl",
        "GetBucketTagging",
        "GetBucketLifecycleConfiguration",
        "GetBucketEncryption",
        "GetBucketPolicy",
        "GetBucketPolicyStatus",
        "GetPublicAccessBlock",
        "GetObjectTagging",
        "ListMultipartUploads",
        "GetObject",
        "HeadObject",
        "GetObjectAcl",
        "GetObjectAttributes",
        "ListParts",
    }
)


def _without_default_port(host: str) -> str:
    for port in (":443", ":80"):
        if host.endswith(port):
            return host[: -len(port)]
    return host


def _request_headers(request: S3Request) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        headers.setdefault(name.decode("latin-1").lower(), []).extend(v.decode("latin-1") for v in values)
    return headers


# The query parameters that select the S3 operation (see s3.routing.route):
# SigV2 signs only some of them, and one outside its signature is refused
# (it would make a captured request another operation).  Not list-type: it
# only picks ListObjectsV2's answer format over ListObjects' for the same
# read-only listing, and boto3's list_objects_v2 over SigV2 sends it unsigned.
OPERATION_PARAMETERS = routing.SUBRESOURCES - {"list-type"}


def client_address(request: S3Request) -> Optional[str]:
    """The address C{request}'s connection came from (None: not an IP connection)."""
    return getattr(request.getClientAddress(), "host", None)


# What an unsigned request may ask for when authentication is required: what
# an ACL can grant to everyone (s3.access), and a browser form's upload
# (signed in its form; an unsigned one is decided as a PutObject).  Anything
# else (ListBuckets, a bucket's tagging, lifecycle, deletion, ...) is its
# owner's only, and refused at once.
ANONYMOUS = frozenset(access.BUCKET_PERMISSIONS) | frozenset(access.OBJECT_PERMISSIONS) | {"PostObject"}


# The query parameters of presigned authentication itself (compared lower-case).
_PRESIGN_PARAMETERS = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-signature",
        "x-amz-security-token",
        # The payload hash is the header's alone: authentication has already
        # chosen the payload mode from it.
        "x-amz-content-sha256",
    }
)


def with_presigned_headers(headers: dict[str, list[str]], query: dict[str, str]) -> dict[str, list[str]]:
    """
    C{headers} plus the C{x-amz-*} query parameters of a presigned request,
    as S3 treats them: SDK presigners hoist C{x-amz-meta-*},
    C{x-amz-checksum-*}, C{x-amz-storage-class}, C{x-amz-acl}, ... into the
    URL, and the signature covers every query parameter, so they are as much
    the signer's as its signed headers.  Call it only after the signature was
    verified.

    A parameter also sent as a header (or twice in the query, in different
    cases) with another value is refused: which one the signer meant is not
    ours to guess.  Values are kept as header values are (the str of the
    bytes as latin-1), so C{x-amz-meta-*} in UTF-8 is stored as a header
    with the same bytes would be.
    """
    merged = dict(headers)
    for name, value in query.items():
        lower = name.lower()
        if not lower.startswith("x-amz-") or lower in _PRESIGN_PARAMETERS:
            continue
        raw = value.encode("utf-8").decode("latin-1")
        present = merged.get(lower)
        if present is not None and present != [raw]:
            raise S3Error(
                "InvalidArgument",
                f"{name} is given both as a header (or query parameter) and as a query parameter, with different values.",
                ArgumentName=name,
                ArgumentValue=value,
            )
        merged[lower] = [raw]
    return merged


class Gateway:
    """
    Shared state of the S3 face: config, store, backends, strategy.

    C{config} and C{strategy} are replaced as a whole on reload; a request
    reads them once, so in-flight requests finish on what they started with.
    """

    def __init__(
        self,
        config: Config,
        store: IMetadataStore,
        pool: BackendPool,
        strategy: IStrategy,
        reactor: Any,
        metrics: Optional[Metrics] = None,
    ) -> None:
        self.config = config
        self.store = store
        self.pool = pool
        self.strategy = strategy
        self.reactor = reactor
        self.metrics = metrics
        self.deleter: Any = None  # set by the service: kicks the deletion worker
        # Set by the service: makes the copies a bucket with replicas wants
        # (s3balance.ops.replicate.ReplicaRepair; see s3.writes.complete_replicas).
        self.replicas: Any = None
        self.handlers: dict[str, Handler] = {}
        self.clock: Callable[[], float] = time.time
        self.in_flight: set[S3Request] = set()
        # The audit log (s3balance.s3.audit.AuditTrail), None when it is off.
        self.audit: Any = None
        # The rate limits (s3balance.s3.ratelimit.RateLimiter), None when none is configured.
        self.rate_limiter: Any = None
        # False while the service starts (store and health checks not up yet): /health says "starting".
        self.ready = True
        # Every virtual bucket's usage and quota as last read from the store
        # (the periodic usage refresh, the admin API): for the metrics and /status.
        self.bucket_usage: list[BucketUsage] = []
        # The buckets' lifecycle rules, for x-amz-expiration (s3.lifecycle).
        from s3balance.s3.lifecycle import LifecycleCache

        self.lifecycles = LifecycleCache(lambda: self.clock())
        from s3balance.s3 import (
            acl_api,
            attributes,
            bucket_policy,
            buckets,
            copy,
            lifecycle,
            multipart,
            object_lock,
            objects,
            versioning,
        )

        self.handlers.update(buckets.HANDLERS)
        self.handlers.update(acl_api.HANDLERS)
        self.handlers.update(objects.HANDLERS)
        self.handlers.update(multipart.HANDLERS)
        self.handlers.update(copy.HANDLERS)
        self.handlers.update(sse.HANDLERS)
        self.handlers.update(attributes.HANDLERS)
        self.handlers.update(lifecycle.HANDLERS)
        self.handlers.update(bucket_policy.HANDLERS)
        self.handlers.update(versioning.HANDLERS)
        self.handlers.update(object_lock.HANDLERS)
        self.handlers["PreflightCORS"] = _preflight_cors

    # -- step 1 and 2: route and authenticate --------------------------------

    def prepare(self, request: S3Request, length: Optional[int]) -> S3Call:
        raw_path, _, raw_query = request.uri.partition(b"?")
        headers = _request_headers(request)
        method = request.method.decode("latin-1").upper()
        s3api = self.config.s3api
        # A virtual-host request is routed and verified on the Host it came
        # with (the client signed "<bucket>.<domain>"); s3api.host, the name
        # clients sign behind a proxy that rewrites Host, stands in for the
        # received Host of path-style requests only.
        received_host = (headers.get("host") or [""])[0]
        domains = s3api.virtual_host_domains
        target = routing.resolve_target(raw_path, received_host, domains)
        if s3api.host and not target.virtual_host:
            target = routing.resolve_target(raw_path, s3api.host, domains)
        public_host = "" if target.virtual_host else s3api.host
        query = routing.parse_query(raw_query)
        if method == "OPTIONS":
            # A browser's CORS preflight: never signed (browsers send no
            # credentials with it), answered from s3api.cors alone.
            if self.metrics is not None:
                self.metrics.track_request(request, "PreflightCORS")
            return S3Call(method, target, "PreflightCORS", query, headers, None, None, raw_path)
        operation = routing.route(method, target, query)
        if operation == "PutObject" and "x-amz-copy-source" in headers:
            operation = "CopyObject"
        if operation == "UploadPart" and "x-amz-copy-source" in headers:
            operation = "UploadPartCopy"
        request.operation, request.target = operation, target
        if self.metrics is not None:
            self.metrics.track_request(request, operation)
        limiter = self.rate_limiter
        # Before the signature is checked: by client address only (SlowDown).
        client_limits = limiter.admit_client(request) if limiter is not None else None
        if operation == "PostObject":
            # Signed in its form, not its headers: authenticated, authorized
            # and checked as the PutObject it stands for once the fields
            # before its file are in (s3.form_upload).
            from s3balance.s3 import form_upload

            call = form_upload.prepare(
                method, target, query, headers, raw_path, client_address(request), request.isSecure()
            )
            if limiter is not None:
                # The client's byte throttle now; the credential's request
                # token once the form named it.
                limiter.admit_verified(request, None, client_limits)
            return call
        sigv4 = SigV4Request(
            method=method,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=headers,
            host_override=public_host,
        )
        verify = functools.partial(
            authenticate,
            lookup=self.lookup_credential,
            virtual_bucket=target.bucket if target.virtual_host else None,
            sigv2_enabled=s3api.sigv2,
            operation_parameters=OPERATION_PARAMETERS,
        )
        try:
            context = verify(sigv4, now=self.clock())
        except S3Error as error:
            # Clients never write a default port in Host: a request signed for
            # "s3.example.com" matches s3api.host "s3.example.com:443" too.
            bare = _without_default_port(public_host)
            if error.code != "SignatureDoesNotMatch" or bare == public_host:
                raise
            context = verify(attr.evolve(sigv4, host_override=bare), now=self.clock())
        # Our lookup (lookup_credential) only finds the configured credentials.
        credential = cast("Optional[Credential]", context.credential if context is not None else None)
        if credential is None and s3api.auth_required and (target.bucket is None or operation not in ANONYMOUS):
            # An unsigned request goes on, as nobody, only to what a grant to
            # everyone may open (s3.access decides once the bucket is read).
            raise S3Error("AccessDenied", "Anonymous access is not allowed; sign your request.")
        if context is not None and ("X-Amz-Signature" in query or "Signature" in query):
            # Only now: the signature was verified over the whole query (and
            # the headers it checked were the ones received); a SigV2 URL's
            # x-amz-* parameters were signed as the headers they stand for.
            headers = with_presigned_headers(headers, query)
            if operation in ("PutObject", "UploadPart") and "x-amz-copy-source" in headers:
                operation = "CopyObject" if operation == "PutObject" else "UploadPartCopy"
        call = S3Call(
            method=method,
            target=target,
            operation=operation,
            query=query,
            headers=headers,
            credential=credential,
            auth=context,
            raw_path=raw_path,
            client=client_address(request),
            secure=request.isSecure(),
        )
        self.authorize(call)
        if limiter is not None:
            # After it: a forged key id must not spend its owner's allowance.
            limiter.admit_verified(request, credential, client_limits)
        # Nothing is encrypted here: a request asking for it is refused, not stored in plaintext.
        sse.refuse_encryption(headers, query)
        # Nor is retention kept: refused, not dropped.
        unkept.refuse_unkept(call)
        # A write's tags or ACL that S3 would refuse are refused before any upload.
        tagging.check_request(call.operation, call.header("x-amz-tagging"), call.header("x-amz-tagging-directive"))
        acl.check_request(call.operation, headers, s3api)
        # A key or header the store cannot hold is refused before any upload.
        limits.check_request(call)
        return call

    def lookup_credential(self, access_key: str) -> Optional[Credential]:
        for credential in self.config.s3api.credentials:
            if hmac.compare_digest(credential.access_key.encode(), access_key.encode()):
                return credential
        return None

    def may_see_bucket(self, credential: Optional[Credential], bucket: str) -> bool:
        return credential is None or credential.buckets is None or bucket in credential.buckets

    def authorize(self, call: S3Call) -> None:
        credential = call.credential
        if credential is None:
            return
        if call.target.bucket is not None and not self.may_see_bucket(credential, call.target.bucket):
            raise S3Error("AccessDenied")
        if credential.read_only and call.operation not in READ_OPERATIONS:
            raise S3Error("AccessDenied", "This access key is read-only.")

    # -- buckets ------------------------------------------------------------

    async def require_bucket(
        self,
        call: S3Call,
        bucket: Optional[str] = None,
        action: Optional[str] = None,
        key: Optional[str] = None,
    ) -> access.BucketAccess:
        """
        The bucket C{call} names (or C{bucket}, e.g. a copy source): NoSuchBucket
        when it does not exist, AccessDenied when the caller may not do
        C{action} (default: the call's operation) on it, or on its object
        C{key} (default: the call's), by its owner, its ACL and its policy
        (L{access.admit}).  A configured bucket's owner, ACL and policy are
        the configuration's (no store read); an API-created one's owner and
        ACL, policy and Block Public Access flags come with the row this
        reads anyway (so a change is seen by every daemon's next request).

        For an action on one object that the bucket alone does not allow, the
        answer is marked as awaiting the object (L{access.BucketAccess}): the
        handler decides with the object's row (L{access.require_object}).
        """
        from s3balance.s3 import bucket_policy

        name = call.bucket if bucket is None else bucket
        action = action or call.operation
        config = self.config
        recorded_owner = recorded_acl = record = None
        configured = config.virtual_bucket(name)
        if configured is None:
            record = await self.store.get_bucket(name)
            if record is None:
                raise S3Error("NoSuchBucket", BucketName=name)
            recorded_owner, recorded_acl = record.owner, record.acl
        owner = access.bucket_owner(config, name, recorded_owner)
        own_policy, own_block = bucket_policy.rules_of(config, name, record)
        facts = bucket_policy.facts(config, owner, own_policy, own_block)
        caller = access.caller_of(config.s3api, call.credential)
        verdict_on: Optional[Callable[[str, Optional[str]], Optional[str]]] = None
        if own_policy is not None:
            if key is None and bucket is None:
                key = call.target.key
            existing_tags = None
            if key is not None and own_policy.mentions("s3:existingobjecttag/"):
                found = await self.store.get_object(name, key)
                existing_tags = dict(found.tags) if found is not None else None
            verdict_on = functools.partial(
                bucket_policy.verdict, facts, call, caller, name, self.clock(), existing_tags
            )
        target = access.BucketAccess(
            name,
            owner,
            access.bucket_acl(config, name, owner, recorded_acl),
            # DeleteObjects is decided key by key (access.may_delete_key).
            verdict=verdict_on(action, key) if verdict_on and action != "DeleteObjects" else None,
            list_verdict=verdict_on("ListObjects", None) if verdict_on and action in access.OBJECT_PERMISSIONS else None,
            ignore_public_acls=facts.ignore_public_acls,
            block_public_acls=facts.block_public_acls,
            verdict_on_key=verdict_on,
            policy=own_policy,
            public_access_block=own_block,
            # A configured bucket's is the configuration's (its row holds the same).
            versioning=configured.versioning if configured is not None else record.versioning if record else None,
            object_lock=record.object_lock if record is not None else None,
        )
        if target.block_public_acls and action in acl.ACL_WRITES and bucket is None:
            # The new object's ACL, from the headers (checked at them).
            requested = acl.from_headers(call.headers, owner, acl.is_account_of(config.s3api), bucket=False)
            access.refuse_public_acl(target, requested)
        return access.admit(caller, target, action)

    # -- step 3.. : run the operation ------------------------------------------

    def start_upload(self, request: S3Request, call: S3Call, length: Optional[int]) -> BodySink:
        from s3balance.s3.bodies import decoded_length
        from s3balance.s3.upload import PartUpload, PutObjectUpload, UnknownLengthUpload

        kind: type[StreamedBody]
        if call.operation == "PostObject":
            from s3balance.s3.form_upload import FormUpload

            form = FormUpload(self, request, call)
            form.start()
            return form
        if call.operation == "UploadPart":
            kind = PartUpload
        elif decoded_length(call, length)[0] is None:
            kind = UnknownLengthUpload
        elif self._replicated_sync(call.bucket):
            from s3balance.s3.replicated_upload import ReplicatedPutObjectUpload

            kind = ReplicatedPutObjectUpload
        else:
            kind = PutObjectUpload
        upload = kind(self, request, call, length)
        upload.start()
        return upload

    def _replicated_sync(self, bucket: str) -> bool:
        """Whether a PutObject into C{bucket} writes several copies at once (replicas, sync)."""
        copies, mode = self.config.replication_of(bucket)
        return copies > 1 and mode == "sync"

    def new_real_key(self, bucket: str) -> str:
        """
        A fresh backend key for every write: an overwrite never touches the
        bytes the current version reads from, so a failed overwrite leaves the
        old object whole.  The virtual name goes into the backend object's
        metadata for recovery.
        """
        return f"{bucket}/{uuid.uuid4().hex}"

    def track(self, request: S3Request) -> None:
        """Count a request as in flight from its headers until it is answered or its client left."""
        self.in_flight.add(request)
        request.notifyFinish().addBoth(lambda _: self.in_flight.discard(request))
        if self.metrics is not None:
            self.metrics.track_request(request, None)
        if self.audit is not None:
            self.audit.track(request)

    def handle(self, request: S3Request) -> None:
        """
        Called from the resource tree when the request is processed.

        The handler's work belongs to its client: when the connection is
        lost before the answer is complete, the handler's Deferred is
        cancelled (as klein does), so a handler waiting on a stalled backend
        or database stops there instead of running on for nobody.  Handlers
        keep what they write safe across cancellation (see
        L{s3balance.s3.streamed_body} and L{s3balance.s3.deferreds.uncancelled}).
        """
        work = ensureDeferred(self._handle(request))
        if not work.called:
            request.notifyFinish().addErrback(_cancel_on_disconnect, work)

    async def _handle(self, request: S3Request) -> None:
        try:
            if request.early_error is not None:
                raise request.early_error
            call = request.call
            if call is None:
                raise S3Error("InternalError")
            upload = request.body_sink
            if upload is not None:
                try:
                    await upload.finished
                except CancelledError:
                    # Stopped, not interrupted: the upload cleans up itself.
                    upload.cancel()
                    raise
                return
            handler = self.handlers.get(call.operation)
            if handler is None:
                raise S3Error("NotImplemented", f"{call.operation} is not implemented by s3balance.")
            await handler(self, request, call)
        except CancelledError:
            # The client left and the handler was stopped: nobody to answer.
            log.debug("request {id}: cancelled, the client is gone", id=request.request_id)
        except S3Error as error:
            self.answer_error(request, error)
        except StoreUnavailable as error:
            log.warn("request {id}: metadata database unavailable: {error}", id=request.request_id, error=str(error))
            self.answer_error(request, S3Error("ServiceUnavailable", "The metadata database is unavailable; try again later."))
        except Exception:
            log.failure("request {id} failed", id=request.request_id)
            self.answer_error(request, S3Error("InternalError"))

    # -- answering ------------------------------------------------------------

    def answer_error(self, request: S3Request, error: S3Error) -> None:
        if request.gone or request.answered_early:
            return
        request.error_code = error.code
        if request.startedWriting:
            # Headers are out: the only honest signal left is a cut connection.
            transport: Any = request.channel.transport
            transport.abortConnection()
            return
        request.setResponseCode(error.status)
        request.responseHeaders.removeHeader(b"content-length")
        for name in (b"etag", b"last-modified", b"accept-ranges", b"content-range"):
            request.responseHeaders.removeHeader(name)
        for header, value in error.headers:
            request.setHeader(header.encode("latin-1"), value.encode("latin-1"))
        if error.status == 304:
            request.finish()
            return
        body = error.to_xml(request.uri.split(b"?")[0].decode("utf-8", "replace"), request.request_id)
        request.setHeader(b"content-type", b"application/xml")
        request.setHeader(b"content-length", str(len(body)).encode())
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def answer_xml(self, request: S3Request, body: bytes, status: int = 200) -> None:
        self.answer_body(request, body, b"application/xml", status)

    def answer_body(self, request: S3Request, body: bytes, content_type: bytes, status: int = 200) -> None:
        if request.gone:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"content-length", str(len(body)).encode())
        request.write(body)
        request.finish()

    def answer_empty(
        self, request: S3Request, status: int = 200, headers: Optional[Mapping[str, str]] = None
    ) -> None:
        if request.gone:
            return
        request.setResponseCode(status)
        for name, value in (headers or {}).items():
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        if status != 204:
            request.setHeader(b"content-length", b"0")
        request.finish()

    def observe_early_answer(self, request: S3Request, error: S3Error) -> None:
        log.info(
            "{method} {path} -> {status} {code} (before the body) [{id}]",
            method=request.method.decode("latin-1"),
            path=request.uri.split(b"?")[0].decode("latin-1"),
            status=error.status,
            code=error.code,
            id=request.request_id,
        )

    def set_bucket_usage(self, rows: list[BucketUsage]) -> None:
        """The buckets' usage and quotas, as just read from the store."""
        self.bucket_usage = list(rows)

    def kick_deleter(self, replaced: bool = False) -> None:
        """
        Run the deletion worker now.  Copies that a commit or delete replaced
        wait out the store's deletion grace, so for those (C{replaced}) an
        immediate run has nothing to do unless the grace is zero.
        """
        if self.deleter is None:
            return
        if replaced and getattr(self.store, "deletion_grace", None):
            return
        self.deleter.kick()


def _cancel_on_disconnect(failure: Failure, work: Deferred[None]) -> None:
    """notifyFinish failed (the connection was lost before the answer was complete): stop the handler."""
    work.cancel()


async def _preflight_cors(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    first = call.header
    requested = ",".join(call.headers.get("access-control-request-headers") or [])
    answer = cors.preflight(
        gateway.config.s3api.cors, first("origin"), first("access-control-request-method"), requested
    )
    gateway.answer_empty(request, 200, answer)
