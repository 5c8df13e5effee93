"""
POST Object: a browser form's upload (C{POST /bucket}, C{multipart/form-data}).

The request is routed at its headers like any other (L{prepare}: only the
media type is checked there), but it carries its authentication in its
body, so L{FormUpload}, its body sink, reads the fields before the C{file}
part (L{s3balance.http.multipart_form}, within L{MAX_FIELDS_BYTES}), then,
when the file's content begins:

  1. verifies the signature over the policy and checks the policy
     (L{s3balance.auth.post_policy});
  2. makes the PutObject call the form stands for (its key with
     C{${filename}} replaced, Content-Type and the other stored headers,
     C{x-amz-meta-*}, C{acl}, C{tagging}, checksums) and passes it through
     the checks every PutObject passes (the credential's limits, SSE, ACLs
     and tags S3 would refuse, key and header sizes); an unsigned form is
     an anonymous PutObject, let in only by a grant of WRITE to AllUsers;
  3. streams the file's content into a L{PostObjectUpload}: the upload of a
     body of unknown length (L{s3balance.s3.upload.UnknownLengthUpload}),
     so the backend gets an ordinary PUT (or multipart upload) with the
     placement, replicas, quotas and write intent of any PutObject.  The
     policy's C{content-length-range} is checked as the bytes come: past
     its maximum the upload is aborted at once (C{EntityTooLarge}).

The answer is S3's: 204 (or C{success_action_status} 200 or 201 with a
C{<PostResponse>}), or 303 to C{success_action_redirect}, with C{ETag} and
C{Location}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, cast
from urllib.parse import quote, urlencode, urlsplit

import attr
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure

from s3balance.auth import post_policy
from s3balance.errors import S3Error, xml_text
from s3balance.http.multipart_form import (
    FileStart,
    FormTooLarge,
    MalformedForm,
    MissingFile,
    MultipartFormParser,
    boundary_of,
)
from s3balance.s3 import acl, limits, sse, tagging, unkept, versioning
from s3balance.s3.call import S3Call
from s3balance.s3.deferreds import observe
from s3balance.s3.request import body_upstream
from s3balance.s3.routing import Target
from s3balance.s3.upload import UnknownLengthUpload
from s3balance.s3.writes import MAX_SINGLE_PUT

if TYPE_CHECKING:
    from s3balance.s3.handler_types import GatewayLike
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import ObjectRecord

# S3 caps the form before the file at about 20 KB (MaxPostPreDataLengthExceeded).
MAX_FIELDS_BYTES = 20 * 1024

# The fields that become the object's headers, as PutObject's would.
HEADER_FIELDS = frozenset(
    {"content-type", "cache-control", "content-disposition", "content-encoding", "content-language", "expires",
     "content-md5", "x-amz-storage-class", "x-amz-website-redirect-location"}
)
HEADER_FIELD_PREFIXES = (
    "x-amz-meta-", "x-amz-checksum-", "x-amz-server-side-encryption", "x-amz-object-lock-", "x-amz-grant-",
)


def _malformed() -> S3Error:
    return S3Error("MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data.",
                   status=400)


def _no_file() -> S3Error:
    return S3Error("InvalidArgument", "POST requires exactly one file upload per request.",
                   ArgumentName="file", ArgumentValue="0")


def prepare(method: str, target: Target, query: dict[str, str], headers: dict[str, list[str]],
            raw_path: bytes, client: Optional[str] = None, secure: bool = False) -> S3Call:
    """
    The call of a POST Object at its headers: not authenticated yet (its
    form carries the signature).  A body that is no form is refused here.
    """
    content_type = (headers.get("content-type") or [""])[0]
    try:
        boundary_of(content_type)
    except MalformedForm:
        media = content_type.partition(";")[0].strip().lower()
        if media == "multipart/form-data":
            raise _malformed() from None
        raise S3Error(
            "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
            Condition="Bucket POST must be of the enclosure-type multipart/form-data",
        ) from None
    return S3Call(method, target, "PostObject", query, headers, None, None, raw_path, client, secure)


class FormUpload:
    """
    The body sink of a POST Object (see the module docstring).  Before the
    file it holds the fields; from the file on it hands the content to its
    L{PostObjectUpload}, which answers.  A form refused before its file is
    answered once the body is in (C{finished} fails with the error).
    """

    def __init__(self, gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
        self.gateway = gateway
        self.request: Optional[S3Request] = request
        self.call = call
        self.fields: list[tuple[str, bytes]] = []
        self.upload: Optional[PostObjectUpload] = None
        self.finished: Deferred[None] = Deferred()
        self._error: Optional[S3Error] = None
        self.parser = MultipartFormParser(
            boundary_of(call.header("content-type") or ""),
            on_field=self._field,
            on_file_start=self._file_start,
            on_file_data=self._file_data,
            on_file_end=lambda: None,
            max_before_file=MAX_FIELDS_BYTES,
        )
        observe(request.body_received).addCallback(self._body_done)

    def start(self) -> None:
        # Nothing to wait for before the fields: they are what is needed first.
        assert self.request is not None
        self.request.send_continue()

    # -- body events ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        try:
            self.parser.feed(data)
        except MalformedForm:
            self._refuse(_malformed())
        except FormTooLarge:
            self._refuse(S3Error("MaxPostPreDataLengthExceeded",
                                 "Your POST request fields preceding the upload file were too large.", status=400))
        except MissingFile:
            self._refuse(_no_file())
        except S3Error as error:
            self._refuse(error)

    def client_gone(self, reason: Optional[Failure]) -> None:
        if self.upload is not None:
            self.upload.client_gone(reason)
        self.request = None

    def cancel(self) -> None:
        if self.upload is not None:
            self.upload.cancel()

    def _refuse(self, error: S3Error) -> None:
        error.__traceback__ = error.__context__ = error.__cause__ = None
        self._error = error
        if self.upload is not None:
            self.upload._fail(error)

    def _body_done(self, complete: bool) -> None:
        if not complete or self.upload is not None:
            return
        error = self._error
        if error is None:
            try:
                self.parser.finish()
                error = _malformed()  # a file started always has an upload
            except MalformedForm:
                error = _malformed()
            except MissingFile:
                error = _no_file()
        self.request = None
        self.finished.errback(Failure(error))

    # -- parser events ------------------------------------------------------------

    def _field(self, name: str, value: bytes) -> None:
        self.fields.append((name, value))

    def _file_data(self, data: bytes) -> None:
        if self.upload is not None and self._error is None:
            self.upload.data_received(data)

    def _file_start(self, start: FileStart) -> None:
        request = self.request
        assert request is not None
        gateway, target = self.gateway, self.call.target
        bucket = cast(str, target.bucket)
        texts = [(name, value.decode("utf-8", "replace")) for name, value in self.fields]
        template = post_policy.PostForm(texts).get("key")
        if template is None:
            raise post_policy.missing_field("key")
        key = template.replace("${filename}", start.filename or "")
        if not key:
            raise S3Error("InvalidArgument", "User key must have a length greater than 0.",
                          ArgumentName="key", ArgumentValue="")
        texts = [(name, key if name.lower() == "key" else value) for name, value in texts]
        form = post_policy.PostForm(texts)
        s3api = gateway.config.s3api
        context = post_policy.authenticate(form, gateway.lookup_credential, s3api.sigv2)
        length_range: Optional[tuple[int, int]] = None
        if context is not None:
            policy = post_policy.parse_policy(cast(str, form.get("policy")))
            length_range = post_policy.check_policy(policy, form, bucket, gateway.clock()).length_range
        headers = _object_headers(self.fields)
        call = S3Call(
            method="POST",
            target=Target(bucket, key, target.virtual_host),
            operation="PutObject",
            query={},
            headers=headers,
            credential=cast("Credential", context.credential) if context is not None else None,
            auth=context,
            raw_path=self.call.raw_path,
            client=self.call.client,
            secure=self.call.secure,
        )
        # The checks every PutObject passes at its headers (Gateway.prepare).
        gateway.authorize(call)
        sse.refuse_encryption(headers, {})
        unkept.refuse_unkept(call)
        if any("aws-chunked" in value.lower() for value in headers.get("content-encoding", [])):
            raise S3Error("InvalidArgument", "A POST form's file cannot be aws-chunked.",
                          ArgumentName="Content-Encoding", ArgumentValue=headers["content-encoding"][0])
        tagging.check_request("PutObject", call.header("x-amz-tagging"), None)
        acl.check_request("PutObject", headers, s3api)
        limits.check_request(call)
        limiter = getattr(gateway, "rate_limiter", None)
        if limiter is not None:
            limiter.admit_credential(call.credential)  # SlowDown when it has no request left
        # From now on the request is this call (the audit log's key id, key),
        # under its own operation's name.
        request.call = attr.evolve(call, operation="PostObject")
        answer = _Answer.from_form(form, self.request_location(request, bucket, key))
        upload = PostObjectUpload(gateway, request, call, None)
        upload.form, upload.length_range, upload.answer = self, length_range, answer
        self.upload = upload
        upload.finished.chainDeferred(self.finished)
        upload.start()

    def request_location(self, request: S3Request, bucket: str, key: str) -> str:
        """The object's URL, as S3's C{Location}: on the host the form was posted to."""
        scheme = "https" if request.isSecure() else "http"
        host = (self.call.headers.get("host") or [""])[0]
        path = quote(key, safe="/~")
        if self.call.target.virtual_host:
            return f"{scheme}://{host}/{path}"
        return f"{scheme}://{host}/{quote(bucket, safe='')}/{path}"


def _object_headers(fields: list[tuple[str, bytes]]) -> dict[str, list[str]]:
    """The PutObject headers the form's fields stand for (values as header values are: latin-1 str of the bytes)."""
    headers: dict[str, list[str]] = {}
    for name, raw in fields:
        lower = name.lower()
        value = raw.decode("latin-1")
        if lower in HEADER_FIELDS or lower.startswith(HEADER_FIELD_PREFIXES):
            headers.setdefault(lower, []).append(value)
        elif lower == "acl":
            headers["x-amz-acl"] = [value]
        elif lower == "tagging":
            tags = tagging.parse_document(raw, tagging.OBJECT)
            if tags:
                headers["x-amz-tagging"] = [urlencode(list(tags)).encode("utf-8").decode("latin-1")]
    return headers


class _Answer:
    """How a stored form is answered: C{success_action_redirect}, else C{success_action_status}."""

    def __init__(self, status: int, redirect: Optional[str], location: str) -> None:
        self.status = status
        self.redirect = redirect
        self.location = location

    @classmethod
    def from_form(cls, form: post_policy.PostForm, location: str) -> _Answer:
        redirect = form.get("success_action_redirect") or form.get("redirect")
        if redirect is not None:
            parts = urlsplit(redirect)
            # S3 falls back to success_action_status for a URL it cannot redirect to.
            if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
                redirect = None
        status = {"200": 200, "201": 201}.get((form.get("success_action_status") or "").strip(), 204)
        return cls(status, redirect, location)


class PostObjectUpload(UnknownLengthUpload):
    """
    The file of a POST Object, streamed as a PutObject of unknown length,
    within the policy's C{content-length-range} and S3's 5 GiB for one
    upload; answered as POST Object is.
    """

    form: FormUpload
    length_range: Optional[tuple[int, int]] = None
    answer: _Answer

    def data_received(self, data: bytes) -> None:
        if self._failed is not None:
            return
        total = self._received + len(data)
        maximum = MAX_SINGLE_PUT
        if self.length_range is not None:
            maximum = min(maximum, self.length_range[1])
        if total > maximum:
            self._fail(S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                               MaxSizeAllowed=str(maximum), ProposedSize=str(total)))
            return
        super().data_received(data)

    def _fail(self, error: S3Error) -> None:
        super()._fail(error)
        # The rest of the body is drained for the answer: a client paused
        # for backpressure must send it.
        if self._paused and self.request is not None:
            self._paused = False
            cast(IPushProducer, body_upstream(self.request)).resumeProducing()

    async def _await_whole_body(self) -> None:
        await super()._await_whole_body()
        if not self.form.parser.file_ended:
            raise _malformed()
        if self.length_range is not None and self._received < self.length_range[0]:
            raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size",
                          MinSizeAllowed=str(self.length_range[0]), ProposedSize=str(self._received))

    def _answer_stored(
        self, etag: str, expiration: Optional[str] = None, stored: Optional[ObjectRecord] = None
    ) -> None:
        request, answer, call = self.request, self.answer, self.call
        if request is None or request.gone:
            return
        headers = {"ETag": etag, "Location": answer.location}
        if expiration is not None:
            headers["x-amz-expiration"] = expiration
        if stored is not None and self.bucket_access is not None:
            headers.update(versioning.version_headers(self.bucket_access, stored))
        for name, value in self._checksums.items():
            headers[f"x-amz-checksum-{name}"] = value
        if answer.redirect is not None:
            query = urlencode({"bucket": call.bucket, "key": call.key, "etag": etag})
            separator = "&" if urlsplit(answer.redirect).query else ("" if answer.redirect.endswith("?") else "?")
            headers["Location"] = answer.redirect + separator + query
            self.gateway.answer_empty(request, 303, headers)
            return
        if answer.status == 201:
            for name, value in headers.items():
                request.setHeader(name.encode("latin-1"), value.encode("latin-1", "replace"))
            # S3's PostResponse has no namespace (unlike its other documents).
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>'
                + "".join(f"<{name}>{xml_text(value)}</{name}>" for name, value in (
                    ("Location", answer.location), ("Bucket", call.bucket), ("Key", call.key), ("ETag", etag)))
                + "</PostResponse>"
            ).encode("utf-8")
            self.gateway.answer_xml(request, body, 201)
            return
        self.gateway.answer_empty(request, answer.status, headers)


if TYPE_CHECKING:
    from s3balance.config.schema import Credential
