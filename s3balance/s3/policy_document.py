"""
A bucket policy document (PutBucketPolicy's body) as S3 reads and checks it,
and whether S3 calls it public.  Pure functions and frozen values, no I/O:

  - L{parse}: the document (JSON) checked as S3 checks it, into a L{Policy};
    a malformed one raises C{MalformedPolicy} (400) with S3's message where
    S3's is known, one too large C{PolicyTooLarge};
  - L{is_public}: whether S3's GetBucketPolicyStatus calls the policy
    public (an Allow to everyone that no fixed-value condition narrows).

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

The actions are L{s3balance.s3.policy_actions}'s, the condition keys and
operators L{s3balance.s3.policy_conditions}'s; what a policy says of a
request is L{s3balance.s3.policy_evaluation}'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal, Optional, Union

from attrs import field, frozen

from s3balance.errors import S3Error
from s3balance.s3.policy_actions import (
    ARN_PREFIX,
    BUCKET_ACTIONS,
    CANONICAL_ACTION,
    OBJECT_ACTIONS,
    SERVICE_ACTIONS,
)
from s3balance.s3.policy_conditions import (
    DATE_OPERATORS,
    KEY_ACTIONS,
    NUMERIC_OPERATORS,
    OPERATORS,
    SET_QUALIFIERS,
    as_binary,
    as_date,
    as_network,
    as_number,
    compiled,
    condition_key,
    known_key,
    wildcard_regex,
)

Verdict = Literal["Allow", "Deny"]

# S3's limit, counted on the document without its insignificant
# whitespace, as S3 counts it.
MAX_POLICY_BYTES = 20 * 1024

VERSIONS = ("2012-10-17", "2008-10-17")
DEFAULT_VERSION = "2008-10-17"  # a document without Version: no policy variables

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
            if allowed is not None and any(CANONICAL_ACTION[a[3:]] not in allowed for a in named):
                raise malformed(CONDITION_MISMATCH)
    if not not_action and not not_resource:
        on_objects = any("/" in r for r in resources)
        on_bucket = any("/" not in r for r in resources)
        for name in named:
            canonical = CANONICAL_ACTION[name[3:]]
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
        regex = compiled(wildcard_regex(name), re.IGNORECASE)
        if not any(regex.fullmatch(known) for known in CANONICAL_ACTION):
            raise malformed(INVALID_ACTION)
    elif name not in CANONICAL_ACTION:
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
            if not known_key(key):
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
            if as_network(value) is None:
                raise malformed(INVALID_IP)
        if operator in ("IpAddress", "NotIpAddress") and as_network(value) is None:
            raise malformed(INVALID_IP)
        if operator in ("Bool", "Null") and value.lower() not in ("true", "false"):
            raise malformed(f"Invalid value for {operator} condition: {value}")
        if operator in NUMERIC_OPERATORS and not _has_variable(value) and as_number(value) is None:
            raise malformed(f"Invalid value for {operator} condition: {value}")
        if operator in DATE_OPERATORS and not _has_variable(value) and as_date(value) is None:
            raise malformed(f"Invalid value for {operator} condition: {value}")
        if operator == "BinaryEquals" and as_binary(value) is None:
            raise malformed(f"Invalid value for {operator} condition: {value}")


def _has_variable(value: str) -> bool:
    return "${" in value


# -- public or not ---------------------------------------------------------------------------------


def _fixing(condition: Condition) -> bool:
    """Whether a condition narrows an Allow to a fixed principal, account, network or key."""
    if condition.if_exists or condition.qualifier == "ForAllValues" or not condition.values:
        return False  # a request without the key passes it
    if condition.key == "aws:sourceip" and condition.operator == "IpAddress":
        for value in condition.values:
            network = as_network(value)
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
