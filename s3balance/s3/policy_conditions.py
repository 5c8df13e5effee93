"""
A bucket policy's Condition vocabulary and what one value of it means: the
condition keys (L{CONDITION_KEYS}, L{condition_key}), the operators
(L{OPERATORS}, L{NEGATED}, L{SET_QUALIFIERS}), the readers of their values
(addresses, numbers, dates, Base64), the policy values as patterns (C{*}
and C{?} wildcards, C{${...}} policy variables: L{matches}) and whether one
request value satisfies one policy value under an operator (L{compare}).
Pure functions, no I/O; the checks of a document are in
L{s3balance.s3.policy_document}, the evaluation of a statement's
conditions in L{s3balance.s3.policy_evaluation}.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, Optional, Union

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


def condition_key(name: str) -> str:
    """A condition key's name as policies and contexts are compared on it."""
    lower = name.lower()
    for prefix in TAG_KEY_PREFIXES:
        if lower.startswith(prefix):
            return prefix + name[len(prefix):]
    return lower


def known_key(key: str) -> bool:
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
POSITIVE = {
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

# -- values --------------------------------------------------------------------------------------


def as_network(value: str) -> Optional[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]]:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


def as_address(value: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def as_number(value: str) -> Optional[decimal.Decimal]:
    try:
        number = decimal.Decimal(value.strip())
    except (decimal.InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def as_date(value: str) -> Optional[datetime.datetime]:
    """An ISO 8601 date or time (UTC when no zone is given) or an epoch time in seconds."""
    text = value.strip()
    number = as_number(text) if re.fullmatch(r"-?\d+(\.\d+)?", text) else None
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


def as_binary(value: str) -> Optional[bytes]:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


# -- patterns ------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@functools.lru_cache(maxsize=4096)
def compiled(source: str, flags: int) -> re.Pattern[str]:
    return re.compile(source, flags | re.DOTALL)


def wildcard_regex(text: str) -> str:
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
    convert = wildcard_regex if wildcards else re.escape
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


def matches(pattern: str, text: str, *, wildcards: bool, ignore_case: bool = False,
             values: Optional[Mapping[str, tuple[str, ...]]] = None) -> bool:
    source = _pattern(pattern, wildcards, values)
    if source is None:
        return False
    return compiled(source, re.IGNORECASE if ignore_case else 0).fullmatch(text) is not None


# -- one value under an operator ----------------------------------------------------------------


def compare(operator: str, request: str, policy: str, values: Optional[Mapping[str, tuple[str, ...]]]) -> bool:
    """Whether one request value satisfies one policy value under a positive operator."""
    if operator in ("StringEquals", "ArnEquals"):
        return matches(policy, request, wildcards=False, values=values)
    if operator == "StringEqualsIgnoreCase":
        return matches(policy, request, wildcards=False, ignore_case=True, values=values)
    if operator in ("StringLike", "ArnLike"):
        return matches(policy, request, wildcards=True, values=values)
    if operator == "Bool":
        return request.lower() == policy.lower()
    if operator == "BinaryEquals":
        return as_binary(request) is not None and as_binary(request) == as_binary(policy)
    if operator == "IpAddress":
        network, address = as_network(policy), as_address(request)
        return network is not None and address is not None and address.version == network.version and (
            address in network
        )
    if operator in NUMERIC_OPERATORS:
        left, right = as_number(request), as_number(policy)
        return left is not None and right is not None and _ordered(operator[len("Numeric"):], left, right)
    if operator in DATE_OPERATORS:
        left_date, right_date = as_date(request), as_date(policy)
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
