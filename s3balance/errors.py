"""
The one S3 error type.

Anything on the request path raises L{S3Error}; the HTTP face renders it in
one place (L{s3balance.s3.responses}) as an S3 XML error document.  Code that
is not on the request path (config, store) has its own exception types and the
HTTP face translates them.
"""

from __future__ import annotations

import re
from typing import Optional
from xml.sax.saxutils import escape

_DEFAULT_MESSAGES: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    "AccessForbidden": (403, "CORSResponse: This CORS request is not allowed."),
    "BadRequest": (400, "Bad Request"),
    "BadDigest": (400, "The Content-MD5 or checksum value that you specified did not match what the server received."),
    "BucketAlreadyExists": (409, "The requested bucket name is not available."),
    "BucketAlreadyOwnedByYou": (409, "Your previous request to create the named bucket succeeded and you already own it."),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size."),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed object size."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the Content-Length HTTP header."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidDigest": (400, "The Content-MD5 or checksum value you specified is not valid."),
    "InvalidPart": (400, "One or more of the specified parts could not be found."),
    "InvalidPartOrder": (400, "The list of parts was not in ascending order."),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidStorageClass": (400, "The storage class you specified is not valid."),
    "InvalidTag": (400, "The tag provided was not a valid tag."),
    "KeyTooLongError": (400, "Your key is too long."),
    "MalformedACLError": (400, "The XML you provided was not well-formed or did not validate against our published schema"),
    "MalformedXML": (400, "The XML you provided was not well-formed or did not validate against our published schema."),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "MissingSecurityHeader": (400, "Your request is missing a required header."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (404, "The specified upload does not exist."),
    "NoSuchVersion": (404, "The specified version does not exist."),
    "NoSuchTagSet": (404, "The TagSet does not exist"),
    "NotImplemented": (501, "A header or query you provided implies functionality that is not implemented."),
    "PreconditionFailed": (412, "At least one of the preconditions you specified did not hold."),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the server's time is too large."),
    "RequestTimeout": (400, "Your socket connection to the server was not read from or written to within the timeout period."),
    "ServiceUnavailable": (503, "Service is unable to handle request."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you provided. Check your key and signing method."),
    "SlowDown": (503, "Please reduce your request rate."),
    "UnexpectedContent": (400, "This request does not support content"),
    "UnresolvableGrantByEmailAddress": (400, "The email address you provided does not match any account on record."),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not match what was computed."),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (400, "Error parsing the X-Amz-Credential parameter."),
    "InsufficientStorage": (507, "No backend has room for this object."),
    # Ceph RGW's code for a bucket (or user) quota a write would exceed.
    "QuotaExceeded": (403, "The bucket's quota does not allow this write."),
    "NotModified": (304, "Not Modified"),
}


# Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(value: str) -> str:
    """Escape text for an XML document; characters XML cannot carry are percent-encoded."""
    return _NOT_XML.sub(lambda m: f"%{ord(m.group()):02X}", escape(value))


class S3Error(Exception):
    """
    An error that is answered to the client as an S3 XML error document.

    @ivar code: the S3 error code, e.g. C{NoSuchKey}.
    @ivar status: the HTTP status.
    @ivar message: a human-readable message (never contains secrets).
    @ivar extra: additional child elements of C{<Error>}, e.g. C{Key}.
    @ivar headers: response headers to send with it (C{Retry-After}).
    """

    headers: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        code: str,
        message: Optional[str] = None,
        status: Optional[int] = None,
        **extra: str,
    ) -> None:
        default_status, default_message = _DEFAULT_MESSAGES.get(code, (500, code))
        self.code = code
        self.status = status if status is not None else default_status
        self.message = message if message is not None else default_message
        self.extra = extra
        super().__init__(f"{code}: {self.message}")

    def to_xml(self, resource: str = "", request_id: str = "") -> bytes:
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>',
            f"<Code>{xml_text(self.code)}</Code>",
            f"<Message>{xml_text(self.message)}</Message>",
        ]
        for name, value in self.extra.items():
            parts.append(f"<{name}>{xml_text(str(value))}</{name}>")
        if resource:
            parts.append(f"<Resource>{xml_text(resource)}</Resource>")
        if request_id:
            parts.append(f"<RequestId>{xml_text(request_id)}</RequestId>")
        parts.append("</Error>")
        return "".join(parts).encode("utf-8")
