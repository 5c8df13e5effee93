"""
Bucket policies and Block Public Access, as S3 reads, checks and applies
them.

Pure functions and frozen values, no I/O:

  - L{parse}: a PutBucketPolicy document (JSON) checked as S3 checks it,
    into a L{Policy}; a malformed one raises C{MalformedPolicy} (400) with
    S3's message where S3's is known, one too large C{PolicyTooLarge};
  - L{evaluate}: what a policy says of one request (L{RequestContext}):
    C{"Deny"} when a matching statement denies it (explicit Deny wins),
    C{"Allow"} when one allows it and none denies it, None when no
    statement speaks of it;
  - L{is_public}: whether S3's GetBucketPolicyStatus calls the policy
    public (an Allow to everyone that no fixed-value condition narrows);
  - L{PublicAccessBlock}: a bucket's four Block Public Access flags;
  - L{decide_policy}: the one call the access decision makes: the
    policy's verdict once Block Public Access (RestrictPublicBuckets) and
    the owner's standing right to manage the policy are applied.

What a document may hold (AWS IAM user guide "IAM JSON policy elements" and
the S3 user guide "Bucket policy examples"; the messages as AWS answers
them, recorded by the S3 compatibles that copy them):

  - C{Version} "2012-10-17" or "2008-10-17" (absent: "2008-10-17", whose
    policies take no C{${...}} variables), C{Id}, and C{Statement}: one
    statement or a non-empty list of them;
  - a statement: C{Sid}, C{Effect} (C{Allow} or C{Deny}), exactly one of
    C{Principal} / C{NotPrincipal} (C{"*"}, C{{"AWS": ...}} with C{"*"},
    C{arn:aws:iam::<account id>:root} or a bare 12-digit account id, or a
    list of them; C{NotPrincipal} with C{Deny} only, as AWS supports it),
    exactly one of C{Action} / C{NotAction} (C{s3:<name>},
    case-insensitive, with C{*} and C{?} wildcards; C{"*"}), exactly one of
    C{Resource} / C{NotResource} (C{arn:aws:s3:::<bucket>} or
    C{arn:aws:s3:::<bucket>/<key pattern>}, naming the policy's own bucket),
    and an optional C{Condition};
  - every action a statement names must apply to one of its resources
    (C{s3:ListBucket} to the bucket, C{s3:GetObject} to objects): else
    "Action does not apply to any resource(s) in statement".

Evaluation follows the IAM rules: values of one condition key are ORed
(for a negated operator, such as C{StringNotEquals}, NORed), keys and
operators ANDed; a key the request lacks makes a condition false, a
negated operator's true, an C{...IfExists} operator's true;
C{ForAnyValue:} / C{ForAllValues:} qualify multi-valued keys.

Over 500 lines: the policy language is one grammar (documents, principals,
actions, resources, condition operators and keys) whose checks at Put and
whose evaluation per request must agree, so they are kept side by side.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Optional, Union

from attrs import field, frozen

from s3balance.errors import S3Error

Verdict = Literal["Allow", "Deny"]

# S3's limit, counted on the document without its insignificant
# whitespace, as S3 counts it.
MAX_POLICY_BYTES = 20 * 1024

VERSIONS = ("2012-10-17", "2008-10-17")
DEFAULT_VERSION = "2008-10-17"  # a document without Version: no policy variables

ARN_PREFIX = "arn:aws:s3:::"
ACCOUNT_ARN = re.compile(r"^arn:aws:iam::(\d{12}):root$")
ACCOUNT_ID = re.compile(r"^\d{12}$")

# -- S3's messages ---------------------------------------------------------------

INVALID_JSON = "This policy contains invalid Json"
FIRST_BYTE = "Policies must be valid JSON and the first byte must be '{'"
EMPTY_STATEMENT = "Could not parse the policy: Statement is empty!"
INVALID_VERSION = "The policy must contain a valid version string"
INVALID_PRINCIPAL = "Invalid principal in policy"
INVALID_ACTION = "Policy has invalid action"
INVALID_RESOURCE = "Policy has invalid resource"
RESOURCE_MISMATCH = "Action does not apply to any resource(s) in statement"
INVALID_CONDITION_KEY = "Policy has an invalid condition key"
CONDITION_MISMATCH = "Conditions do not apply to combination of actions and resources in statement"
INVALID_IP = "Invalid IP address in Conditions"
TOO_LARGE = "Policy exceeds the maximum allowed document size."


def malformed(message: str) -> S3Error:
    """The C{MalformedPolicy} error S3 answers a document it refuses."""
    return S3Error("MalformedPolicy", message, status=400)


# -- the S3 actions ----------------------------------------------------------------
#
# Every action a bucket policy may name, by the resource it applies to: a
# policy naming another is refused (INVALID_ACTION), and an action naming
# no resource of its kind in its statement too (RESOURCE_MISMATCH).

OBJECT_ACTIONS = frozenset(
    """AbortMultipartUpload BypassGovernanceRetention DeleteObject DeleteObjectTagging
    DeleteObjectVersion DeleteObjectVersionTagging GetObject GetObjectAcl GetObjectAttributes
    GetObjectLegalHold GetObjectRetention GetObjectTagging GetObjectTorrent GetObjectVersion
    GetObjectVersionAcl GetObjectVersionAttributes GetObjectVersionForReplication
    GetObjectVersionTagging GetObjectVersionTorrent InitiateReplication ListMultipartUploadParts
    ObjectOwnerOverrideToBucketOwner PutObject PutObjectAcl PutObjectLegalHold PutObjectRetention
    PutObjectTagging PutObjectVersionAcl PutObjectVersionTagging ReplicateDelete ReplicateObject
    ReplicateTags RestoreObject""".split()
)
BUCKET_ACTIONS = frozenset(
    """CreateBucket DeleteBucket DeleteBucketOwnershipControls DeleteBucketPolicy DeleteBucketWebsite
    GetAccelerateConfiguration GetAnalyticsConfiguration GetBucketAcl GetBucketCORS
    GetBucketLocation GetBucketLogging GetBucketNotification GetBucketObjectLockConfiguration
    GetBucketOwnershipControls GetBucketPolicy GetBucketPolicyStatus GetBucketPublicAccessBlock
    GetBucketRequestPayment GetBucketTagging GetBucketVersioning GetBucketWebsite
    GetEncryptionConfiguration GetIntelligentTieringConfiguration GetInventoryConfiguration
    GetLifecycleConfiguration GetMetricsConfiguration GetReplicationConfiguration ListBucket
    ListBucketMultipartUploads ListBucketVersions PutAccelerateConfiguration
    PutAnalyticsConfiguration PutBucketAcl PutBucketCORS PutBucketLogging PutBucketNotification
    PutBucketObjectLockConfiguration PutBucketOwnershipControls PutBucketPolicy
    PutBucketPublicAccessBlock PutBucketRequestPayment PutBucketTagging PutBucketVersioning
    PutBucketWebsite PutEncryptionConfiguration PutIntelligentTieringConfiguration
    PutInventoryConfiguration PutLifecycleConfiguration PutMetricsConfiguration
    PutReplicationConfiguration""".split()
)
# Actions on no bucket (their resource is "*"): valid names, but never of a
# bucket policy's resources.
SERVICE_ACTIONS = frozenset({"ListAllMyBuckets"})
ALL_ACTIONS = OBJECT_ACTIONS | BUCKET_ACTIONS | SERVICE_ACTIONS
_CANONICAL_ACTION = {name.lower(): name for name in ALL_ACTIONS}

# The S3 operations (as s3balance routes them, s3.routing) and the action a
# policy grants or denies them by.  DeleteObjects is s3:DeleteObject for
# each of its keys; CopyObject / UploadPartCopy need s3:GetObject on their
# source besides; a multipart upload is s3:PutObject from its start to its
# completion.
OPERATION_ACTIONS: Mapping[str, str] = {
    "ListBuckets": "s3:ListAllMyBuckets",
    "HeadBucket": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "GetBucketAcl": "s3:GetBucketAcl",
    "PutBucketAcl": "s3:PutBucketAcl",
    "GetBucketTagging": "s3:GetBucketTagging",
    "PutBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketPolicyStatus": "s3:GetBucketPolicyStatus",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "PutObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "PostObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "GetObjectAttributes": "s3:GetObjectAttributes",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "GetObjectAcl": "s3:GetObjectAcl",
    "PutObjectAcl": "s3:PutObjectAcl",
    "GetObjectTagging": "s3:GetObjectTagging",
    "PutObjectTagging": "s3:PutObjectTagging",
    "DeleteObjectTagging": "s3:DeleteObjectTagging",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "GetObjectRetention": "s3:GetObjectRetention",
    "PutObjectRetention": "s3:PutObjectRetention",
    "GetObjectLegalHold": "s3:GetObjectLegalHold",
    "PutObjectLegalHold": "s3:PutObjectLegalHold",
}

# What the bucket owner may always do, whatever its policy denies: S3 never
# locks the owning account out of its bucket's policy.
OWNER_ALWAYS = frozenset({"s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"})


def action_of(operation: str) -> Optional[str]:
    """The IAM action (C{"s3:GetObject"}) of an S3 operation; None for those no policy speaks of."""
    return OPERATION_ACTIONS.get(operation)


def resource_arn(bucket: str, key: Optional[str] = None) -> str:
    """The ARN a statement's Resource is matched against: the bucket's, or an object's."""
    return f"{ARN_PREFIX}{bucket}" if key is None else f"{ARN_PREFIX}{bucket}/{key}"


# -- condition keys ------------------------------------------------------------------
#
# Names are case-insensitive (kept lower-case); a tag key after the "/" of
# s3:ExistingObjectTag/<key> keeps its case, as tag keys are case-sensitive.

CONDITION_KEYS = frozenset(
    """aws:sourceip aws:securetransport aws:referer aws:useragent aws:currenttime aws:epochtime
    aws:principalaccount aws:principalarn aws:principaltype aws:userid aws:username
    aws:principalorgid aws:principalorgpaths aws:principalisawsservice aws:principalservicename
    aws:sourcevpc aws:sourcevpce aws:vpcsourceip aws:sourceaccount aws:sourcearn aws:sourceowner
    aws:sourceorgid aws:multifactorauthpresent aws:multifactorauthage aws:tokenissuetime
    aws:calledvia aws:viaawsservice aws:requestedregion aws:resourceaccount
    s3:prefix s3:delimiter s3:max-keys s3:x-amz-acl s3:x-amz-server-side-encryption
    s3:x-amz-server-side-encryption-aws-kms-key-id s3:signatureversion s3:authtype
    s3:signatureage s3:tlsversion s3:x-amz-content-sha256 s3:x-amz-storage-class
    s3:x-amz-copy-source s3:x-amz-metadata-directive s3:x-amz-website-redirect-location
    s3:x-amz-grant-read s3:x-amz-grant-write s3:x-amz-grant-read-acp s3:x-amz-grant-write-acp
    s3:x-amz-grant-full-control s3:requestobjecttagkeys s3:versionid s3:locationconstraint
    s3:resourceaccount s3:object-lock-mode s3:object-lock-retain-until-date
    s3:object-lock-remaining-retention-days s3:object-lock-legal-hold""".split()
)
TAG_KEY_PREFIXES = ("s3:existingobjecttag/", "s3:requestobjecttag/", "aws:requesttag/", "aws:resourcetag/",
                    "aws:principaltag/")

# Keys only some actions carry: naming one in a statement whose (named,
# wildcard-free) actions include another is refused (CONDITION_MISMATCH).
KEY_ACTIONS: Mapping[str, frozenset[str]] = {
    "s3:prefix": frozenset({"ListBucket", "ListBucketVersions"}),
    "s3:delimiter": frozenset({"ListBucket", "ListBucketVersions"}),
    "s3:max-keys": frozenset({"ListBucket", "ListBucketVersions"}),
    "s3:x-amz-acl": frozenset({"PutObject", "PutObjectAcl", "PutBucketAcl"}),
}

# Keys whose fixed value makes an Allow to everyone not public
# (GetBucketPolicyStatus, BlockPublicPolicy): they name one principal,
# account, network or key, not the world.
FIXING_KEYS = frozenset(
    """aws:principalaccount aws:principalarn aws:principalorgid aws:userid aws:sourceaccount
    aws:sourcearn aws:sourceowner aws:sourcevpc aws:sourcevpce
    s3:x-amz-server-side-encryption-aws-kms-key-id""".split()
)
# An aws:SourceIp range wider than these is as good as everyone.
NARROWEST_PUBLIC_PREFIX = {4: 8, 6: 32}


def condition_key(name: str) -> str:
    """A condition key's name as policies and contexts are compared on it."""
    lower = name.lower()
    for prefix in TAG_KEY_PREFIXES:
        if lower.startswith(prefix):
            return prefix + name[len(prefix):]
    return lower


def _known_key(key: str) -> bool:
    if key in CONDITION_KEYS:
        return True
    return any(key.startswith(prefix) and len(key) > len(prefix) for prefix in TAG_KEY_PREFIXES)


# -- condition operators -------------------------------------------------------------

STRING_OPERATORS = ("StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
                    "StringLike", "StringNotLike")
NUMERIC_OPERATORS = ("NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
                     "NumericGreaterThan", "NumericGreaterThanEquals")
DATE_OPERATORS = ("DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan",
                  "DateGreaterThanEquals")
ARN_OPERATORS = ("ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike")
OPERATORS = frozenset(
    STRING_OPERATORS + NUMERIC_OPERATORS + DATE_OPERATORS + ARN_OPERATORS
    + ("Bool", "BinaryEquals", "IpAddress", "NotIpAddress", "Null")
)
NEGATED = frozenset(
    {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NumericNotEquals", "DateNotEquals",
     "NotIpAddress", "ArnNotEquals", "ArnNotLike"}
)
# The positive operator a negated one is the complement of.
_POSITIVE = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "NotIpAddress": "IpAddress",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}
SET_QUALIFIERS = ("ForAnyValue", "ForAllValues")


# -- the parsed document ------------------------------------------------------------------


@frozen
class Principals:
    """A Principal (or NotPrincipal): everyone (C{"*"}), or these account ids."""

    everyone: bool
    accounts: frozenset[str]

    def includes(self, account: Optional[str]) -> bool:
        return self.everyone or (account is not None and account in self.accounts)


@frozen
class Condition:
    """
    One key of one operator of a statement's Condition: C{operator} without
    its qualifier and C{IfExists} (C{"StringEquals"}), C{qualifier}
    (C{"ForAnyValue"}, C{"ForAllValues"} or None), C{key} as L{condition_key}
    names it, C{values} as strings (JSON booleans and numbers as JSON writes them).
    """

    operator: str
    qualifier: Optional[str]
    if_exists: bool
    key: str
    values: tuple[str, ...]


@frozen
class Statement:
    """
    One statement.  C{principals} is the Principal's, or the NotPrincipal's
    when C{not_principal}; likewise C{actions} (patterns, lower-case, with
    their C{s3:}) and C{resources} (patterns).
    """

    sid: Optional[str]
    effect: Verdict
    principals: Principals
    not_principal: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]


@frozen
class Policy:
    """
    A checked bucket policy: its statements, for the bucket C{bucket}, and
    C{text}, the document as received (GetBucketPolicy answers it).
    """

    bucket: str
    version: str
    id: Optional[str]
    statements: tuple[Statement, ...]
    text: str = field(eq=False, repr=False)

    @property
    def uses_variables(self) -> bool:
        return self.version == "2012-10-17"

    @property
    def public(self) -> bool:
        """L{is_public}: whether S3 calls this policy public."""
        return is_public(self)

    def mentions(self, prefix: str) -> bool:
        """Whether a condition names a key starting with C{prefix} (e.g. C{"s3:existingobjecttag/"})."""
        return any(c.key.startswith(prefix) for s in self.statements for c in s.conditions)


# -- parsing ---------------------------------------------------------------------------------

_TOP_FIELDS = ("Version", "Id", "Statement")
_STATEMENT_FIELDS = ("Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
                     "NotResource", "Condition")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise malformed(INVALID_JSON) from None


def parse(document: Union[bytes, str], bucket: str) -> Policy:
    """
    The policy C{document} (PutBucketPolicy's body) sets on C{bucket},
    checked as S3 checks it.

    @raise S3Error: C{MalformedPolicy} (400) for a document S3 refuses,
        C{PolicyTooLarge} (400) for one over L{MAX_POLICY_BYTES}.
    """
    if isinstance(document, bytes):
        if not document.startswith(b"{"):
            raise malformed(FIRST_BYTE)
        try:
            text = document.decode("utf-8")
        except UnicodeDecodeError:
            raise malformed(INVALID_JSON) from None
    else:
        text = document
        if not text.startswith("{"):
            raise malformed(FIRST_BYTE)
    raw = _load_json(text)
    if not isinstance(raw, dict):
        raise malformed(INVALID_JSON)
    compact = json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if len(compact) > MAX_POLICY_BYTES:
        raise S3Error("PolicyTooLarge", TOO_LARGE, status=400)
    for name in raw:
        if name not in _TOP_FIELDS:
            raise malformed(f"Unknown field {name}")
    version = raw.get("Version", DEFAULT_VERSION)
    if version not in VERSIONS:
        raise malformed(INVALID_VERSION)
    policy_id = raw.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise malformed(INVALID_JSON)
    if "Statement" not in raw:
        raise malformed("Missing required field Statement")
    statements = raw["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise malformed(INVALID_JSON)
    if not statements:
        raise malformed(EMPTY_STATEMENT)
    return Policy(
        bucket=bucket,
        version=version,
        id=policy_id,
        statements=tuple(_statement(s, bucket) for s in statements),
        text=text,
    )


def _one_of(raw: Mapping[str, Any], name: str, negated: str) -> tuple[Any, bool]:
    """The value of C{name} or of its C{Not} form (exactly one must be there)."""
    if name in raw and negated in raw:
        raise malformed(f"Statement can not have both {name} and {negated}")
    if name in raw:
        return raw[name], False
    if negated in raw:
        return raw[negated], True
    raise malformed(f"Missing required field {name}")


def _strings(value: Any, message: str) -> list[str]:
    """A string or a non-empty list of strings (else MalformedPolicy C{message})."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise malformed(message)


def _statement(raw: Any, bucket: str) -> Statement:
    if not isinstance(raw, dict):
        raise malformed(INVALID_JSON)
    for name in raw:
        if name not in _STATEMENT_FIELDS:
            raise malformed(f"Unknown field {name}")
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise malformed(INVALID_JSON)
    if "Effect" not in raw:
        raise malformed("Missing required field Effect")
    effect = raw["Effect"]
    if effect not in ("Allow", "Deny"):
        raise malformed(f"Invalid effect: {effect if isinstance(effect, str) else json.dumps(effect)}")
    principal, not_principal = _one_of(raw, "Principal", "NotPrincipal")
    if not_principal and effect == "Allow":
        # NotPrincipal only excepts principals from a Deny: AWS does not
        # support it with Allow (which would open the bucket to everyone,
        # anonymous callers included, but a few).
        raise malformed(INVALID_PRINCIPAL)
    principals = _principals(principal)
    action, not_action = _one_of(raw, "Action", "NotAction")
    actions = tuple(_action(a) for a in _strings(action, INVALID_ACTION))
    resource, not_resource = _one_of(raw, "Resource", "NotResource")
    resources = tuple(_resource(r, bucket) for r in _strings(resource, INVALID_RESOURCE))
    conditions = _conditions(raw.get("Condition", {}))
    named = [a for a in actions if "*" not in a and "?" not in a]
    if not not_action:
        for condition in conditions:
            allowed = KEY_ACTIONS.get(condition.key)
            if allowed is not None and any(_CANONICAL_ACTION[a[3:]] not in allowed for a in named):
                raise malformed(CONDITION_MISMATCH)
    if not not_action and not not_resource:
        on_objects = any("/" in r for r in resources)
        on_bucket = any("/" not in r for r in resources)
        for name in named:
            canonical = _CANONICAL_ACTION[name[3:]]
            if canonical in OBJECT_ACTIONS and not on_objects:
                raise malformed(RESOURCE_MISMATCH)
            if canonical in BUCKET_ACTIONS and not on_bucket:
                raise malformed(RESOURCE_MISMATCH)
            if canonical in SERVICE_ACTIONS:
                raise malformed(RESOURCE_MISMATCH)
    return Statement(
        sid=sid,
        effect=effect,
        principals=principals,
        not_principal=not_principal,
        actions=actions,
        not_action=not_action,
        resources=resources,
        not_resource=not_resource,
        conditions=conditions,
    )


def _principals(value: Any) -> Principals:
    if value == "*":
        return Principals(True, frozenset())
    if not isinstance(value, dict) or set(value) != {"AWS"}:
        # Service, CanonicalUser and Federated principals name nothing here.
        raise malformed(INVALID_PRINCIPAL)
    everyone = False
    accounts = set()
    for item in _strings(value["AWS"], INVALID_PRINCIPAL):
        if item == "*":
            everyone = True
            continue
        match = ACCOUNT_ARN.match(item)
        if match is not None:
            accounts.add(match.group(1))
        elif ACCOUNT_ID.match(item):
            accounts.add(item)
        else:
            raise malformed(INVALID_PRINCIPAL)
    return Principals(everyone, frozenset(accounts))


def _action(value: str) -> str:
    if value == "*":
        return "s3:*"
    service, colon, name = value.partition(":")
    if not colon or service.lower() != "s3" or not name:
        raise malformed(INVALID_ACTION)
    name = name.lower()
    if "*" in name or "?" in name:
        regex = _compiled(_wildcards(name), re.IGNORECASE)
        if not any(regex.fullmatch(known) for known in _CANONICAL_ACTION):
            raise malformed(INVALID_ACTION)
    elif name not in _CANONICAL_ACTION:
        raise malformed(INVALID_ACTION)
    return f"s3:{name}"


def _resource(value: str, bucket: str) -> str:
    if not value.startswith(ARN_PREFIX):
        raise malformed(INVALID_RESOURCE)
    named, slash, _ = value[len(ARN_PREFIX):].partition("/")
    if named != bucket:
        raise malformed(INVALID_RESOURCE)
    return value


def _condition_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return json.dumps(value)
    raise malformed(INVALID_JSON)


def _conditions(raw: Any) -> tuple[Condition, ...]:
    if not isinstance(raw, dict):
        raise malformed(INVALID_JSON)
    found: list[Condition] = []
    for name, keys in raw.items():
        operator, qualifier, if_exists = _operator(name)
        if not isinstance(keys, dict):
            raise malformed(INVALID_JSON)
        for key_name, values in keys.items():
            key = condition_key(key_name)
            if not _known_key(key):
                raise malformed(INVALID_CONDITION_KEY)
            listed = values if isinstance(values, list) else [values]
            strings = tuple(_condition_value(v) for v in listed)
            _check_values(operator, key, strings)
            found.append(Condition(operator, qualifier, if_exists, key, strings))
    return tuple(found)


def _operator(name: str) -> tuple[str, Optional[str], bool]:
    qualifier = None
    base = name
    prefix, colon, rest = name.partition(":")
    if colon:
        if prefix not in SET_QUALIFIERS:
            raise malformed(f"Invalid Condition type : {name}")
        qualifier, base = prefix, rest
    if_exists = base.endswith("IfExists")
    if if_exists:
        base = base[: -len("IfExists")]
    if base not in OPERATORS or (base == "Null" and (if_exists or qualifier)):
        raise malformed(f"Invalid Condition type : {name}")
    return base, qualifier, if_exists


def _check_values(operator: str, key: str, values: tuple[str, ...]) -> None:
    """Values an operator could never compare are refused, never left to silently match nothing."""
    for value in values:
        if key == "aws:sourceip" and operator not in ("Null",) and not _has_variable(value):
            if _network(value) is None:
                raise malformed(INVALID_IP)
        if operator in ("IpAddress", "NotIpAddress") and _network(value) is None:
            raise malformed(INVALID_IP)
        if operator in ("Bool", "Null") and value.lower() not in ("true", "false"):
            raise malformed(f"Invalid value for {operator} condition: {value}")
        if operator in NUMERIC_OPERATORS and not _has_variable(value) and _number(value) is None:
            raise malformed(f"Invalid value for {operator} condition: {value}")
        if operator in DATE_OPERATORS and not _has_variable(value) and _date(value) is None:
            raise malformed(f"Invalid value for {operator} condition: {value}")
        if operator == "BinaryEquals" and _binary(value) is None:
            raise malformed(f"Invalid value for {operator} condition: {value}")


def _has_variable(value: str) -> bool:
    return "${" in value


# -- values --------------------------------------------------------------------------------------


def _network(value: str) -> Optional[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]]:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


def _address(value: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _number(value: str) -> Optional[decimal.Decimal]:
    try:
        number = decimal.Decimal(value.strip())
    except (decimal.InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _date(value: str) -> Optional[datetime.datetime]:
    """An ISO 8601 date or time (UTC when no zone is given) or an epoch time in seconds."""
    text = value.strip()
    number = _number(text) if re.fullmatch(r"-?\d+(\.\d+)?", text) else None
    if number is not None:
        try:
            return datetime.datetime.fromtimestamp(float(number), datetime.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def _binary(value: str) -> Optional[bytes]:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


# -- patterns ------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@functools.lru_cache(maxsize=4096)
def _compiled(source: str, flags: int) -> re.Pattern[str]:
    return re.compile(source, flags | re.DOTALL)


def _wildcards(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _substitute(inner: str, values: Mapping[str, tuple[str, ...]]) -> Optional[str]:
    """A policy variable's value (C{${aws:SourceIp}}, C{${*}}, C{${key, 'default'}}); None: it has none."""
    name, comma, default = inner.partition(",")
    name = name.strip()
    if name in ("*", "?", "$"):
        return name
    found = values.get(condition_key(name))
    if found:
        return found[0]
    if comma:
        default = default.strip()
        if len(default) >= 2 and default[0] == default[-1] == "'":
            return default[1:-1]
    return None


def _pattern(pattern: str, wildcards: bool, values: Optional[Mapping[str, tuple[str, ...]]]) -> Optional[str]:
    """
    The regular expression of a policy value: C{*} and C{?} as wildcards when
    C{wildcards}, C{${...}} replaced by the request's values when C{values}
    (a 2012-10-17 policy), taken literally (a C{${*}} is a star, never a
    wildcard).  None when a variable has no value: the value then matches nothing.
    """
    convert = _wildcards if wildcards else re.escape
    if values is None or "${" not in pattern:
        return convert(pattern)
    out = []
    position = 0
    for match in _VARIABLE.finditer(pattern):
        out.append(convert(pattern[position : match.start()]))
        value = _substitute(match.group(1), values)
        if value is None:
            return None
        out.append(re.escape(value))
        position = match.end()
    out.append(convert(pattern[position:]))
    return "".join(out)


def _matches(pattern: str, text: str, *, wildcards: bool, ignore_case: bool = False,
             values: Optional[Mapping[str, tuple[str, ...]]] = None) -> bool:
    source = _pattern(pattern, wildcards, values)
    if source is None:
        return False
    return _compiled(source, re.IGNORECASE if ignore_case else 0).fullmatch(text) is not None


# -- evaluation ----------------------------------------------------------------------------------


@frozen
class RequestContext:
    """
    What a policy is evaluated against: the IAM C{action}
    (C{"s3:GetObject"}, L{action_of}), the C{resource} ARN (L{resource_arn}),
    the caller's C{account} (None: anonymous), whether the caller is a
    configuration-level C{admin}, and the request's condition C{values}, by
    L{condition_key} (see L{context_values}).  A key the request does not
    carry is left out.
    """

    action: str
    resource: str
    account: Optional[str] = None
    admin: bool = False
    values: Mapping[str, tuple[str, ...]] = field(factory=dict, eq=False)


def context_values(values: Mapping[str, Union[str, Sequence[str], None]]) -> dict[str, tuple[str, ...]]:
    """C{values} as L{RequestContext.values} wants them: names normalized, each a tuple, None left out."""
    found: dict[str, tuple[str, ...]] = {}
    for name, value in values.items():
        if value is None:
            continue
        found[condition_key(name)] = (value,) if isinstance(value, str) else tuple(value)
    return found


def _compare(operator: str, request: str, policy: str, values: Optional[Mapping[str, tuple[str, ...]]]) -> bool:
    """Whether one request value satisfies one policy value under a positive operator."""
    if operator in ("StringEquals", "ArnEquals"):
        return _matches(policy, request, wildcards=False, values=values)
    if operator == "StringEqualsIgnoreCase":
        return _matches(policy, request, wildcards=False, ignore_case=True, values=values)
    if operator in ("StringLike", "ArnLike"):
        return _matches(policy, request, wildcards=True, values=values)
    if operator == "Bool":
        return request.lower() == policy.lower()
    if operator == "BinaryEquals":
        return _binary(request) is not None and _binary(request) == _binary(policy)
    if operator == "IpAddress":
        network, address = _network(policy), _address(request)
        return network is not None and address is not None and address.version == network.version and (
            address in network
        )
    if operator in NUMERIC_OPERATORS:
        left, right = _number(request), _number(policy)
        return left is not None and right is not None and _ordered(operator[len("Numeric"):], left, right)
    if operator in DATE_OPERATORS:
        left_date, right_date = _date(request), _date(policy)
        return left_date is not None and right_date is not None and _ordered(
            operator[len("Date"):], left_date, right_date
        )
    return False


def _ordered(relation: str, left: Any, right: Any) -> bool:
    relations: dict[str, Callable[[Any, Any], bool]] = {
        "Equals": lambda a, b: a == b,
        "LessThan": lambda a, b: a < b,
        "LessThanEquals": lambda a, b: a <= b,
        "GreaterThan": lambda a, b: a > b,
        "GreaterThanEquals": lambda a, b: a >= b,
    }
    return relations[relation](left, right)


def _holds(condition: Condition, context: RequestContext, variables: bool) -> bool:
    """Whether one condition (one operator, one key) holds for the request."""
    present = context.values.get(condition.key)
    values = context.values if variables else None
    if condition.operator == "Null":
        absent = not present
        return all((v.lower() == "true") == absent for v in condition.values)
    if not present:
        if condition.if_exists:
            return True
        if condition.qualifier == "ForAllValues":
            return True
        if condition.qualifier == "ForAnyValue":
            return False
        return condition.operator in NEGATED
    negated = condition.operator in NEGATED
    positive = _POSITIVE.get(condition.operator, condition.operator)

    def satisfied(request: str) -> bool:
        hit = any(_compare(positive, request, policy, values) for policy in condition.values)
        return not hit if negated else hit

    if condition.qualifier == "ForAllValues":
        return all(satisfied(r) for r in present)
    if condition.qualifier == "ForAnyValue":
        return any(satisfied(r) for r in present)
    # A single-valued key (several values only from a multi-valued one used
    # without a qualifier): any value matching is a match.
    if negated:
        return not any(not satisfied(r) for r in present)
    return any(satisfied(r) for r in present)


def _statement_applies(statement: Statement, context: RequestContext, variables: bool) -> bool:
    in_principals = statement.principals.includes(context.account)
    if in_principals == statement.not_principal:
        return False
    action = context.action.lower()
    named = any(_matches(pattern, action, wildcards=True, ignore_case=True) for pattern in statement.actions)
    if named == statement.not_action:
        return False
    values = context.values if variables else None
    covered = any(_matches(pattern, context.resource, wildcards=True, values=values)
                  for pattern in statement.resources)
    if covered == statement.not_resource:
        return False
    return all(_holds(condition, context, variables) for condition in statement.conditions)


def evaluate(policy: Policy, context: RequestContext) -> Optional[Verdict]:
    """
    What C{policy} says of the request: C{"Deny"} when a statement that
    applies denies it (explicit Deny wins over every Allow), C{"Allow"} when
    one allows it and none denies it, None when none applies.
    """
    allowed = False
    for statement in policy.statements:
        if _statement_applies(statement, context, policy.uses_variables):
            if statement.effect == "Deny":
                return "Deny"
            allowed = True
    return "Allow" if allowed else None


# -- public or not ---------------------------------------------------------------------------------


def _fixing(condition: Condition) -> bool:
    """Whether a condition narrows an Allow to a fixed principal, account, network or key."""
    if condition.if_exists or condition.qualifier == "ForAllValues" or not condition.values:
        return False  # a request without the key passes it
    if condition.key == "aws:sourceip" and condition.operator == "IpAddress":
        for value in condition.values:
            network = _network(value)
            if network is None or network.prefixlen < NARROWEST_PUBLIC_PREFIX[network.version]:
                return False
        return True
    if condition.key in FIXING_KEYS and condition.operator in (
        "StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike"
    ):
        return not any("*" in v or "?" in v or "${" in v for v in condition.values)
    return False


def statement_is_public(statement: Statement) -> bool:
    """An Allow to everyone that no fixed-value condition narrows."""
    if statement.effect != "Allow" or not statement.principals.everyone:
        return False
    return not any(_fixing(condition) for condition in statement.conditions)


def is_public(policy: Policy) -> bool:
    """Whether S3 calls C{policy} public (GetBucketPolicyStatus's IsPublic, BlockPublicPolicy)."""
    return any(statement_is_public(statement) for statement in policy.statements)


# -- Block Public Access -----------------------------------------------------------------------------

PUBLIC_ACCESS_BLOCK_FIELDS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


@frozen
class PublicAccessBlock:
    """
    A bucket's Block Public Access flags (PutPublicAccessBlock), or the
    gateway's (C{s3api.block_public_access}: all four); L{union} is what
    applies when both are set, as S3 combines a bucket's and its account's.

      - C{block_public_acls}: a public ACL in a request is refused;
      - C{ignore_public_acls}: public ACL grants grant nothing;
      - C{block_public_policy}: PutBucketPolicy of a public policy is refused;
      - C{restrict_public_buckets}: while the policy is public, it grants
        nothing to other accounts or anonymous callers.
    """

    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False

    def union(self, other: PublicAccessBlock) -> PublicAccessBlock:
        return PublicAccessBlock(*(a or b for a, b in zip(self.flags(), other.flags(), strict=True)))

    def flags(self) -> tuple[bool, bool, bool, bool]:
        return (self.block_public_acls, self.ignore_public_acls, self.block_public_policy,
                self.restrict_public_buckets)

    def dump(self) -> str:
        """The text the store keeps (JSON, S3's element names)."""
        return json.dumps(dict(zip(PUBLIC_ACCESS_BLOCK_FIELDS, self.flags(), strict=True)), separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> PublicAccessBlock:
        raw = json.loads(text)
        return cls(*(bool(raw.get(name, False)) for name in PUBLIC_ACCESS_BLOCK_FIELDS))


NO_BLOCK = PublicAccessBlock()
ALL_BLOCKED = PublicAccessBlock(True, True, True, True)


@frozen
class BucketPolicyFacts:
    """
    What access decisions know of a bucket's policy side: its owning
    account, its policy (None: none) and the Block Public Access flags that
    apply to it (the bucket's with the gateway's).
    """

    owner: str
    policy: Optional[Policy]
    block: PublicAccessBlock = NO_BLOCK

    @property
    def ignore_public_acls(self) -> bool:
        """Whether public ACL grants (AllUsers, AuthenticatedUsers) grant nothing on this bucket."""
        return self.block.ignore_public_acls

    @property
    def block_public_acls(self) -> bool:
        """Whether a request setting a public ACL on this bucket or its objects is refused."""
        return self.block.block_public_acls


def decide_policy(facts: BucketPolicyFacts, context: RequestContext) -> Optional[Verdict]:
    """
    The bucket policy's verdict on a request, as the access decision takes
    it: C{"Deny"} (refuse, whatever else grants), C{"Allow"} (grant, as an
    ACL grant would), None (the policy says nothing: ownership and ACLs decide).

    Two rules beyond L{evaluate}: the owning account (and an admin) may
    always read, set and delete the policy (S3 never locks an owner out of
    it); and with RestrictPublicBuckets, a public policy grants nothing to
    a caller outside the owning account (its Deny still denies).
    """
    policy = facts.policy
    if policy is None:
        return None
    own = context.admin or (context.account is not None and context.account == facts.owner)
    if own and context.action in OWNER_ALWAYS:
        return None
    verdict = evaluate(policy, context)
    if verdict == "Allow" and facts.block.restrict_public_buckets and policy.public and not own:
        return None
    return verdict
