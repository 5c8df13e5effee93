"""
S3's POST Object authentication: the signature over the form's C{policy}
and the checks of the policy document against the form.

Pure: no I/O.  The caller (L{s3balance.s3.form_upload}) hands the form's
fields as read (L{PostForm}); L{authenticate} verifies the signature (SigV4:
C{x-amz-algorithm}, C{x-amz-credential}, C{x-amz-date}, C{x-amz-signature}
= hex HMAC-SHA256 of the base64 policy under the derived SigV4 key; SigV2:
C{AWSAccessKeyId} and C{signature} = base64 HMAC-SHA1 of the base64 policy)
and L{check_policy} the policy: C{expiration}, every condition met, every
field covered by a condition.  The file's length is checked by the caller
against L{PolicyOutcome.length_range} while it streams.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import attrs

from s3balance.auth.canonical import SERVICE, TERMINATOR, signing_key
from s3balance.auth.fields import parse_amz_date
from s3balance.auth.sigv4 import ALGORITHM, AuthContext, CredentialLike, CredentialLookup, PayloadMode
from s3balance.errors import S3Error

# Fields a policy need not (cannot) cover, compared lower-case; and the
# prefix of those a client may add freely.
UNCOVERED_FIELDS = frozenset({"x-amz-signature", "file", "policy", "awsaccesskeyid", "signature"})
IGNORED_PREFIX = "x-ignore-"
# A policy's expiration is an ISO 8601 date and time ("2007-12-01T12:00:00.000Z"):
# S3 refuses other spellings Python would read (a space for the "T", a date alone).
_EXPIRATION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?", re.ASCII)


@attrs.frozen
class PostForm:
    """
    The fields of a POST form before its file, in order, names as sent.
    Names are looked up case-insensitively (L{get}); C{key} is the key
    with C{${filename}} already replaced.
    """

    fields: Sequence[tuple[str, str]]

    def get(self, name: str) -> Optional[str]:
        lower = name.lower()
        for field_name, value in self.fields:
            if field_name.lower() == lower:
                return value
        return None

    def names(self) -> list[str]:
        return [name for name, _ in self.fields]


@attrs.frozen
class PolicyOutcome:
    """What a met policy leaves to check while the file streams: (min, max) of its length, or None."""

    length_range: Optional[tuple[int, int]]


def missing_field(name: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields.",
        ArgumentName=name,
        ArgumentValue="",
    )


def _invalid_policy(detail: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {detail}", status=400)


def _denied(detail: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {detail}")


# -- the signature --------------------------------------------------------------


def authenticate(
    form: PostForm, lookup: CredentialLookup, sigv2_enabled: bool = True
) -> Optional[AuthContext]:
    """
    Verify the form's signature over its policy.

    @return: the L{AuthContext} of the signing credential, or C{None} for a
        form with no authentication at all (anonymous: the caller decides).
    @raise S3Error: the signature is missing a part, wrong, or unknown.
    """
    v4 = form.get("x-amz-signature") is not None or form.get("x-amz-credential") is not None
    v2 = form.get("AWSAccessKeyId") is not None or form.get("signature") is not None
    policy = form.get("policy")
    if v4 and v2:
        raise S3Error("InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Signature or the signature field should be given.")
    if not v4 and not v2:
        if policy is not None:
            raise missing_field("AWSAccessKeyId")
        return None
    if policy is None:
        raise missing_field("policy")
    if v4:
        return _authenticate_v4(form, policy, lookup)
    if not sigv2_enabled:
        raise S3Error(
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
        )
    return _authenticate_v2(form, policy, lookup)


def _required(form: PostForm, name: str) -> str:
    value = form.get(name)
    if value is None:
        raise missing_field(name)
    return value


def _authenticate_v4(form: PostForm, policy: str, lookup: CredentialLookup) -> AuthContext:
    algorithm = _required(form, "x-amz-algorithm")
    credential_field = _required(form, "x-amz-credential")
    amz_date = _required(form, "x-amz-date")
    provided = _required(form, "x-amz-signature")
    if algorithm != ALGORITHM:
        raise S3Error(
            "InvalidArgument", "X-Amz-Algorithm only supports 'AWS4-HMAC-SHA256'",
            ArgumentName="x-amz-algorithm", ArgumentValue=algorithm,
        )
    if parse_amz_date(amz_date) is None:
        raise S3Error(
            "InvalidArgument", "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
            ArgumentName="x-amz-date", ArgumentValue=amz_date,
        )
    parts = credential_field.split("/")
    if len(parts) != 5 or not all(parts) or parts[3] != SERVICE or parts[4] != TERMINATOR:
        raise S3Error(
            "InvalidArgument", "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; "
            'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".',
            ArgumentName="x-amz-credential", ArgumentValue=credential_field,
        )
    access_key, date, region = parts[0], parts[1], parts[2]
    if date != amz_date[:8]:
        raise S3Error(
            "InvalidArgument", f'Invalid credential date "{date}". This date is not the same as X-Amz-Date: "{amz_date[:8]}".',
            ArgumentName="x-amz-credential", ArgumentValue=credential_field,
        )
    credential = _lookup(lookup, access_key)
    key = signing_key(credential.secret_key, date, region)
    expected = hmac.new(key, policy.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), provided.strip().lower().encode("utf-8", "replace")):
        raise S3Error("SignatureDoesNotMatch")
    return AuthContext(
        credential=credential,
        payload_mode=PayloadMode.UNSIGNED,
        content_sha256=None,
        signing_key=key,
        seed_signature=expected,
        scope=f"{date}/{region}/{SERVICE}/{TERMINATOR}",
        amz_date=amz_date,
        region=region,
    )


def _authenticate_v2(form: PostForm, policy: str, lookup: CredentialLookup) -> AuthContext:
    access_key = _required(form, "AWSAccessKeyId")
    provided = _required(form, "signature")
    credential = _lookup(lookup, access_key)
    expected = hmac.new(credential.secret_key.encode("utf-8"), policy.encode("utf-8"), hashlib.sha1).digest()
    try:
        provided_digest = base64.b64decode(provided.strip(), validate=True)
    except (binascii.Error, ValueError):
        provided_digest = b""
    if not hmac.compare_digest(expected, provided_digest):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key, StringToSign=policy, SignatureProvided=provided)
    return AuthContext(
        credential=credential,
        payload_mode=PayloadMode.UNSIGNED,
        content_sha256=None,
        signing_key=b"",
        seed_signature=provided,
        scope="",
        amz_date="",
        region="",
        signature_version=2,
    )


def _lookup(lookup: CredentialLookup, access_key: str) -> CredentialLike:
    credential = lookup(access_key)
    if credential is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return credential


# -- the policy document ----------------------------------------------------------


@attrs.frozen
class Condition:
    """One condition: C{operator} is eq, starts-with or content-length-range; C{name} lower-case, without C{$}."""

    operator: str
    name: str
    value: Any
    upper: int = 0
    # As S3 shows it in "Policy Condition failed: [...]".
    text: str = ""


@attrs.frozen
class Policy:
    expiration: float
    conditions: tuple[Condition, ...]


def parse_policy(encoded: str) -> Policy:
    """
    Decode the base64 JSON policy document.

    @raise S3Error: C{InvalidPolicyDocument} for anything malformed.
    """
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
        document = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise _invalid_policy("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise _invalid_policy("Invalid JSON.")
    if "expiration" not in document:
        raise _invalid_policy("Policy missing expiration.")
    if "conditions" not in document:
        raise _invalid_policy("Policy missing conditions.")
    expiration = _parse_expiration(document["expiration"])
    conditions = document["conditions"]
    if not isinstance(conditions, list):
        raise _invalid_policy("Invalid JSON.")
    return Policy(expiration, tuple(_parse_condition(item) for item in conditions))


def _parse_expiration(value: Any) -> float:
    if not isinstance(value, str) or not _EXPIRATION.fullmatch(value.strip()):
        raise _invalid_policy(f"Invalid 'expiration' value: '{value}'")
    try:
        when = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid_policy(f"Invalid 'expiration' value: '{value}'") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    try:
        return when.timestamp()
    except (OverflowError, ValueError):
        raise _invalid_policy(f"Invalid 'expiration' value: '{value}'") from None


def _render(items: Iterable[Any]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def _parse_condition(item: Any) -> Condition:
    if isinstance(item, dict):
        if len(item) != 1:
            raise _invalid_policy(f"Invalid Simple-Condition: Simple-Conditions must have exactly one property specified. {json.dumps(item)}")
        ((name, value),) = item.items()
        if not isinstance(value, str):
            raise _invalid_policy(f"Invalid Simple-Condition: value must be a string. {json.dumps(item)}")
        return Condition("eq", name.lower().removeprefix("$"), value, text=_render(["eq", f"${name}", value]))
    if not isinstance(item, list) or not item or not isinstance(item[0], str):
        raise _invalid_policy(f"Invalid Condition: {json.dumps(item)}")
    operator = item[0].lower()
    text = _render(item)
    if operator == "content-length-range":
        if len(item) != 3:
            raise _invalid_policy(f"Invalid content-length-range: {text}")
        bounds = []
        for bound in item[1:]:
            if isinstance(bound, bool):
                raise _invalid_policy(f"Invalid content-length-range: {text}")
            if isinstance(bound, str):
                bound = bound.strip()
                if not bound.isdigit() or not bound.isascii():
                    raise _invalid_policy(f"Invalid content-length-range: {text}")
                bound = int(bound)
            if not isinstance(bound, int) or bound < 0:
                raise _invalid_policy(f"Invalid content-length-range: {text}")
            bounds.append(bound)
        return Condition("content-length-range", "", bounds[0], bounds[1], text=text)
    if operator not in ("eq", "starts-with"):
        raise _invalid_policy(f"Invalid Condition: unknown operation '{item[0]}'")
    if len(item) != 3 or not isinstance(item[1], str) or not isinstance(item[2], str):
        raise _invalid_policy(f"Invalid Condition: {text}")
    if not item[1].startswith("$"):
        raise _invalid_policy(f"Invalid Condition: the field name must start with '$': {text}")
    return Condition(operator, item[1][1:].lower(), item[2], text=text)


def check_policy(policy: Policy, form: PostForm, bucket: str, now: float) -> PolicyOutcome:
    """
    Check a (verified) policy against the form.

    @raise S3Error: C{AccessDenied} "Invalid according to Policy: ..." when
        it expired, a condition fails, or a field is not covered.  The
        bucket counts as a field of every form, as on S3: a policy without a
        C{bucket} condition is refused ("Extra input fields: bucket"), so a
        signed policy never serves another bucket than the one it names.
    """
    if now >= policy.expiration:
        raise _denied("Policy expired.")
    covered: set[str] = set()
    length_range: Optional[tuple[int, int]] = None
    for condition in policy.conditions:
        if condition.operator == "content-length-range":
            length_range = (condition.value, condition.upper)
            continue
        covered.add(condition.name)
        actual = bucket if condition.name == "bucket" else form.get(condition.name)
        if actual is None:
            actual = ""
        if condition.operator == "eq":
            met = actual == condition.value
        else:
            met = actual.startswith(condition.value)
            if condition.name == "content-type" and "," in actual:
                # Each of a list of types must start with the prefix.
                met = all(part.strip().startswith(condition.value) for part in actual.split(","))
        if not met:
            raise _denied(f"Policy Condition failed: {condition.text}")
    extra = [] if "bucket" in covered else ["bucket"]
    extra += [
        name
        for name in form.names()
        if name.lower() not in UNCOVERED_FIELDS
        and not name.lower().startswith(IGNORED_PREFIX)
        and name.lower() not in covered
    ]
    if extra:
        raise _denied("Extra input fields: " + ", ".join(dict.fromkeys(extra)))
    return PolicyOutcome(length_range)


__all__ = ["PostForm", "Policy", "PolicyOutcome", "authenticate", "check_policy", "missing_field", "parse_policy"]
