"""
Access control lists (ACLs) of buckets and objects, as S3 reads, checks,
answers and keeps them.

Pure functions, no I/O: the canned ACLs (C{x-amz-acl}), the grant headers
(C{x-amz-grant-read: id="111122223333", uri="http://..."}), the
C{<AccessControlPolicy>} document of Put/Get*Acl, and the text the store
keeps in the C{acl} columns (L{dump}, L{load}).

An ACL is a tuple of L{Grant}s: who (a L{Grantee}, an account or one of the
two groups) may do what (a permission).  Grantees are accounts of this
gateway (C{s3api.accounts}, 12-digit ids) and the groups AllUsers (anyone,
anonymous callers included) and AuthenticatedUsers (any caller acting as an
account).  What a permission allows is decided in L{s3balance.s3.access}.

Ownership: an object is owned by its bucket's owner, whoever wrote it (as on
S3 with Object Ownership "BucketOwnerPreferred" when every writer sends
C{bucket-owner-full-control}).  So the canned ACLs' "owner" is the bucket's
owner, and C{bucket-owner-read} and C{bucket-owner-full-control} grant no
more than C{private}.  A writer from another account who wants to read its
object back grants itself (C{x-amz-grant-read: id="..."}).

What S3 answers and is answered the same here:

  - an unknown canned ACL: C{InvalidArgument};
  - a canned ACL and grant headers together: C{InvalidRequest} "Specifying
    both Canned ACLs and Header Grants is not allowed";
  - a grant to an id that is no account here: C{InvalidArgument} "Invalid
    id" (S3's answer for an unknown canonical user id);
  - a grant by e-mail address: C{UnresolvableGrantByEmailAddress} (as S3
    in the regions that do not resolve e-mail grantees);
  - an C{<AccessControlPolicy>} that does not follow S3's schema:
    C{MalformedACLError};
  - more than 100 grants: C{MalformedACLError} (S3's limit).

Not kept, so refused (C{NotImplemented}) instead of accepted and dropped: the
canned ACLs C{aws-exec-read} (a grant to Amazon EC2) and
C{log-delivery-write}, and grants to the LogDelivery group (there is no
server access logging here to deliver).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Optional

from attrs import frozen

from s3balance.errors import S3Error
from s3balance.s3.xmldoc import Node, document, parse

if TYPE_CHECKING:
    from s3balance.config.schema import S3APIConfig

FULL_CONTROL = "FULL_CONTROL"
READ = "READ"
WRITE = "WRITE"
READ_ACP = "READ_ACP"
WRITE_ACP = "WRITE_ACP"
PERMISSIONS = (FULL_CONTROL, WRITE, WRITE_ACP, READ, READ_ACP)

CANONICAL_USER = "CanonicalUser"
GROUP = "Group"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = (ALL_USERS, AUTHENTICATED_USERS)

XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_TYPE = f"{{{XSI}}}type"

# S3's limit on the grants of one ACL.
MAX_GRANTS = 100

# The request headers that grant one permission each.  An object's WRITE
# opens no operation (writing an object is its bucket's WRITE): S3 takes it
# in an object's ACL (PutObjectAcl), but a write of the object refuses
# x-amz-grant-write.
GRANT_HEADERS: Mapping[str, str] = {
    "x-amz-grant-full-control": FULL_CONTROL,
    "x-amz-grant-read": READ,
    "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write": WRITE,
    "x-amz-grant-write-acp": WRITE_ACP,
}

CANNED = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)
# Canned ACLs S3 knows and we do not keep (see the module's docstring).
CANNED_NOT_KEPT = ("aws-exec-read", "log-delivery-write")


@frozen
class Grantee:
    """An account (C{kind} L{CANONICAL_USER}, C{value} its id) or a group (L{GROUP}, its URI)."""

    kind: str
    value: str

    @classmethod
    def account(cls, account_id: str) -> Grantee:
        return cls(CANONICAL_USER, account_id)

    @classmethod
    def group(cls, uri: str) -> Grantee:
        return cls(GROUP, uri)


@frozen
class Grant:
    grantee: Grantee
    permission: str


ACL = tuple[Grant, ...]

PUBLIC = Grantee.group(ALL_USERS)
AUTHENTICATED = Grantee.group(AUTHENTICATED_USERS)


def private(owner: str) -> ACL:
    """The ACL every bucket and object has until told otherwise: its owner's full control."""
    return (Grant(Grantee.account(owner), FULL_CONTROL),)


@functools.lru_cache(maxsize=256)
def canned(name: str, owner: str) -> ACL:
    """
    The grants of canned ACL C{name} for a bucket or object owned by
    C{owner}; C{InvalidArgument} for a name S3 does not know, C{NotImplemented}
    for one it knows and we do not keep.  Remembered: a configured bucket's
    is asked for on every request.
    """
    grants = list(private(owner))
    if name == "public-read":
        grants.append(Grant(PUBLIC, READ))
    elif name == "public-read-write":
        grants += [Grant(PUBLIC, READ), Grant(PUBLIC, WRITE)]
    elif name == "authenticated-read":
        grants.append(Grant(AUTHENTICATED, READ))
    elif name in CANNED_NOT_KEPT:
        raise S3Error(
            "NotImplemented",
            f"The canned ACL {name} is not supported by s3balance.",
            Header="x-amz-acl",
        )
    elif name not in CANNED:
        raise S3Error("InvalidArgument", None, ArgumentName="x-amz-acl", ArgumentValue=name)
    # private, bucket-owner-read, bucket-owner-full-control: an object's
    # owner is its bucket's, so these grant nothing more.
    return tuple(grants)


def _unknown_id(account_id: str) -> S3Error:
    return S3Error("InvalidArgument", "Invalid id", ArgumentName="CanonicalUser/ID", ArgumentValue=account_id)


def _unresolvable(address: str) -> S3Error:
    return S3Error("UnresolvableGrantByEmailAddress", EmailAddress=address)


def _group(uri: str) -> Grantee:
    if uri in GROUPS:
        return Grantee.group(uri)
    if uri == LOG_DELIVERY:
        raise S3Error("NotImplemented", "Grants to the LogDelivery group are not supported by s3balance.")
    raise S3Error("InvalidArgument", "Invalid group uri", ArgumentName="Group/URI", ArgumentValue=uri)


def _checked_account(account_id: str, is_account: Callable[[str], bool]) -> Grantee:
    if not is_account(account_id):
        raise _unknown_id(account_id)
    return Grantee.account(account_id)


def _header_grantees(header: str, value: str, is_account: Callable[[str], bool]) -> list[Grantee]:
    """The grantees of one C{x-amz-grant-*} header: C{type=value} pairs, comma-separated, values maybe quoted."""
    grantees = []
    for piece in value.split(","):
        piece = piece.strip()
        kind, equals, raw = piece.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        kind = kind.strip().lower()
        if not equals or not raw or kind not in ("id", "uri", "emailaddress"):
            raise S3Error("InvalidArgument", "Argument format not recognized", ArgumentName=header,
                          ArgumentValue=value)
        if kind == "id":
            grantees.append(_checked_account(raw, is_account))
        elif kind == "uri":
            grantees.append(_group(raw))
        else:
            raise _unresolvable(raw)
    return grantees


def _bounded(grants: Iterable[Grant]) -> ACL:
    """C{grants} without repeats, in their order; MalformedACLError beyond S3's 100."""
    unique = tuple(dict.fromkeys(grants))
    if len(unique) > MAX_GRANTS:
        raise S3Error("MalformedACLError", f"An access control list holds at most {MAX_GRANTS} grants.")
    return unique


def grant_headers_present(headers: Mapping[str, Sequence[str]]) -> bool:
    return any(name in headers for name in GRANT_HEADERS)


def from_headers(
    headers: Mapping[str, Sequence[str]],
    owner: str,
    is_account: Callable[[str], bool],
    bucket: bool,
    *,
    replacing: bool = False,
) -> Optional[ACL]:
    """
    The ACL a request's C{x-amz-acl} or C{x-amz-grant-*} headers ask for,
    for a bucket (C{bucket}) or an object owned by C{owner}; None when it
    sends neither.  C{is_account} tells the account ids grants may name.

    Grant headers give the whole ACL, as on S3: the owner keeps its full
    control only if a header grants it (it may still do anything here, see
    L{s3balance.s3.access}).  C{x-amz-grant-write} on an object is taken
    when C{replacing} its ACL (PutObjectAcl, as S3 takes it; the grant
    opens nothing) and refused, as S3 refuses it, on a write of the object.
    """
    canned_name = _first(headers, "x-amz-acl")
    granted = grant_headers_present(headers)
    if canned_name is not None and granted:
        raise S3Error("InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed")
    if canned_name is not None:
        return canned(canned_name, owner)
    if not granted:
        return None
    grants: list[Grant] = []
    for header, permission in GRANT_HEADERS.items():
        if not bucket and not replacing and permission == WRITE and header in headers:
            raise S3Error("InvalidArgument", "WRITE is not a permission of objects.", ArgumentName=header)
        for value in headers.get(header, ()):
            grants.extend(Grant(grantee, permission) for grantee in _header_grantees(header, value, is_account))
    return _bounded(grants)


def is_account_of(s3api: S3APIConfig) -> Callable[[str], bool]:
    """Whether an id names an account of C{s3api}: who grants may name."""
    return lambda account_id: s3api.account(account_id) is not None


# The writes whose x-amz-acl / x-amz-grant-* headers set the new object's
# (or bucket's) ACL.
ACL_WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload", "CreateBucket"})


def check_request(operation: str, headers: Mapping[str, Sequence[str]], s3api: S3APIConfig) -> None:
    """
    Refuse, before any byte is stored, a write whose ACL headers S3 would
    refuse (the owner does not change what is valid: any account id stands
    in for it).
    """
    if operation in ACL_WRITES:
        from_headers(headers, "", is_account_of(s3api), bucket=operation == "CreateBucket")


def requested(
    headers: Mapping[str, Sequence[str]], owner: str, s3api: S3APIConfig, bucket: bool = False
) -> Optional[str]:
    """What the store keeps (L{dump}) of the ACL a write's headers ask for (None: private)."""
    return dump(from_headers(headers, owner, is_account_of(s3api), bucket), owner)


def _first(headers: Mapping[str, Sequence[str]], name: str) -> Optional[str]:
    values = headers.get(name)
    return values[0] if values else None


# -- the AccessControlPolicy document ------------------------------------------


def _malformed() -> S3Error:
    return S3Error("MalformedACLError")


def _single_text(element: object, tag: str) -> Optional[str]:
    """The text of C{element}'s only child C{tag} (None without one; two: malformed)."""
    found = element.findall(tag)  # type: ignore[attr-defined]
    if len(found) > 1:
        raise _malformed()
    if not found:
        return None
    return (found[0].text or "").strip()


def parse_document(body: bytes, owner: str, is_account: Callable[[str], bool]) -> ACL:
    """
    The ACL of a PutBucketAcl / PutObjectAcl body::

        <AccessControlPolicy>
          <Owner><ID>111122223333</ID></Owner>
          <AccessControlList>
            <Grant>
              <Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                       xsi:type="CanonicalUser"><ID>...</ID></Grantee>
              <Permission>READ</Permission>
            </Grant>
          </AccessControlList>
        </AccessControlPolicy>

    The Owner, when given, must be the bucket's or object's C{owner}
    (AccessDenied otherwise: an ACL cannot hand over ownership); a Grantee's
    C{xsi:type} must match what it names (an ID, a URI, an EmailAddress);
    DisplayName is ignored, as S3 ignores it.  WRITE is taken on an object
    too, as S3 takes it: it opens nothing there.
    """
    try:
        root = parse(body)
    except S3Error:
        raise _malformed() from None
    if root.tag != "AccessControlPolicy":
        raise _malformed()
    owners = root.findall("Owner")
    if len(owners) > 1:
        raise _malformed()
    if owners:
        owner_id = _single_text(owners[0], "ID")
        if owner_id is None:
            raise _malformed()
        if owner_id != owner:
            raise S3Error("AccessDenied", "The Owner of an access control policy cannot be changed.")
    lists = root.findall("AccessControlList")
    if len(lists) != 1:
        raise _malformed()
    grants: list[Grant] = []
    for element in lists[0]:
        if element.tag != "Grant":
            raise _malformed()
        grantees = element.findall("Grantee")
        permission = _single_text(element, "Permission")
        if len(grantees) != 1 or permission is None:
            raise _malformed()
        if permission not in PERMISSIONS:
            raise _malformed()
        grants.append(Grant(_document_grantee(grantees[0], is_account), permission))
    return _bounded(grants)


def _document_grantee(element: object, is_account: Callable[[str], bool]) -> Grantee:
    kind = element.get(_XSI_TYPE)  # type: ignore[attr-defined]
    account_id = _single_text(element, "ID")
    uri = _single_text(element, "URI")
    address = _single_text(element, "EmailAddress")
    if kind == CANONICAL_USER and account_id:
        return _checked_account(account_id, is_account)
    if kind == GROUP and uri:
        return _group(uri)
    if kind == "AmazonCustomerByEmail" and address:
        raise _unresolvable(address)
    raise _malformed()


def render(acl: ACL, owner: str, names: Callable[[str], list[Node]]) -> bytes:
    """
    The C{<AccessControlPolicy>} Get*Acl answers: C{owner}'s Owner and
    C{acl}'s grants; C{names(account_id)} gives an account's ID and
    DisplayName elements.
    """
    grants: list[Node] = []
    for grant in acl:
        if grant.grantee.kind == CANONICAL_USER:
            grantee: list[Node] = list(names(grant.grantee.value))
        else:
            grantee = [("URI", grant.grantee.value)]
        # The type is an attribute, which document() does not write: marked
        # here by the element's name and put in place below.
        grants.append(("Grant", [(f"Grantee-{grant.grantee.kind}", grantee), ("Permission", grant.permission)]))
    body = document("AccessControlPolicy", [("Owner", names(owner)), ("AccessControlList", grants)])
    for kind in (CANONICAL_USER, GROUP):
        body = body.replace(
            f"<Grantee-{kind}>".encode(), f'<Grantee xmlns:xsi="{XSI}" xsi:type="{kind}">'.encode()
        ).replace(f"</Grantee-{kind}>".encode(), b"</Grantee>")
    return body


# -- what the store keeps -------------------------------------------------------


def dump(acl: Optional[ACL], owner: str) -> Optional[str]:
    """
    The text the C{acl} column keeps: None (NULL) for the private ACL of
    C{owner} (and for no ACL asked), else the grants as JSON,
    C{[["CanonicalUser", "111122223333", "FULL_CONTROL"], ["Group", "http://...", "READ"], ...]}.
    """
    if acl is None or acl == private(owner):
        return None
    return json.dumps([[grant.grantee.kind, grant.grantee.value, grant.permission] for grant in acl],
                      separators=(",", ":"))


def load(text: Optional[str], owner: str) -> ACL:
    """L{dump}'s inverse: NULL is the private ACL of C{owner} (the bucket's owner as it is now)."""
    if text is None:
        return private(owner)
    return _loaded(text)


@functools.lru_cache(maxsize=1024)
def _loaded(text: str) -> ACL:
    """Remembered: the same few ACLs (public-read, ...) are read again and again on the request path."""
    return tuple(Grant(Grantee(kind, value), permission) for kind, value, permission in json.loads(text))


def permissions_of(acl: ACL, account: Optional[str]) -> frozenset[str]:
    """
    What C{acl} grants a caller acting as C{account} (None: anonymous):
    its own grants, AllUsers' and, with an account, AuthenticatedUsers'.
    """
    granted = set()
    for grant in acl:
        grantee = grant.grantee
        if grantee == PUBLIC or (account is not None and (
            grantee == AUTHENTICATED or (grantee.kind == CANONICAL_USER and grantee.value == account)
        )):
            granted.add(grant.permission)
    return frozenset(granted)
