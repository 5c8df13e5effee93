"""
Bucket lifecycle configurations, as S3 reads, checks, keeps and applies them.

Pure functions, no I/O: the C{<LifecycleConfiguration>} document of
PutBucketLifecycleConfiguration (L{parse_document}), the one
GetBucketLifecycleConfiguration answers (L{render}), the text the store
keeps (L{dump} / L{load}: JSON), and what a rule selects and when it is due
(L{Rule.matches}, L{expiry_of}, L{version_expiry}, L{abort_due}).

S3's rules, with the errors S3 answers (AWS API reference
"PutBucketLifecycleConfiguration" and "LifecycleRule"; the answers as AWS
gives them, recorded by the S3 compatibles that copy them):

  - 1 to 1000 rules (C{MalformedXML} without one); IDs unique and at most
    255 characters (C{InvalidArgument}); a rule without an ID is given one;
  - C{Status} C{Enabled} or C{Disabled}; a C{Filter} (one of C{Prefix},
    C{Tag}, C{ObjectSizeGreaterThan}, C{ObjectSizeLessThan}, C{And}; empty:
    every object) or, the older form, a C{Prefix} in the rule, not both and
    not neither (C{MalformedXML});
  - at least one action (C{InvalidRequest});
  - C{Expiration}: exactly one of C{Days} (a positive integer), C{Date}
    (ISO 8601 at midnight UTC) or C{ExpiredObjectDeleteMarker};
    C{NoncurrentVersionExpiration}: C{NoncurrentDays} and maybe
    C{NewerNoncurrentVersions} (1 to 100); C{AbortIncompleteMultipartUpload}:
    C{DaysAfterInitiation}; none of them with a tag filter where S3 refuses
    it (C{AbortIncompleteMultipartUpload}, C{ExpiredObjectDeleteMarker}) nor
    C{AbortIncompleteMultipartUpload} with a size filter (C{InvalidRequest}).

C{Transition} and C{NoncurrentVersionTransition} move objects between
storage classes, which s3balance does not have: refused (C{NotImplemented},
naming the element), never stored and ignored; one S3 would refuse as
invalid (a C{Date} not at midnight, negative days) gets S3's 400 first.
C{NoncurrentVersionExpiration} and C{ExpiredObjectDeleteMarker} are
accepted on a bucket without versioning too, as S3 does: there they find
nothing to remove.

When an object is due (AWS user guide "Lifecycle configuration elements"
and "Expiring objects"):

  - C{Days} counts from Last-Modified, and the result is rounded up to the
    next midnight UTC (an object written 2014-01-15 10:30 with 3 days
    expires at 2014-01-19 00:00); a C{Date} expires every matching object
    from that midnight on.  Either applies to a key's current version only
    (in a versioned bucket its expiry adds a delete marker), and to a
    delete marker that is its key's only version left (an "expired object
    delete marker"), which goes once it is as old as the rule says;
  - C{NoncurrentVersionExpiration}: a version becomes noncurrent when the
    next newer version (or delete marker) of its key is written; it goes
    C{NoncurrentDays} after that moment, rounded up as C{Days} are, unless
    it is one of the C{NewerNoncurrentVersions} newest noncurrent versions
    of its key (both conditions must hold).  Noncurrent delete markers are
    noncurrent versions, counted and removed alike;
  - C{ExpiredObjectDeleteMarker} true: an expired object delete marker
    goes at once;
  - C{DaysAfterInitiation} counts from the upload's initiation, rounded as
    C{Days}.

A delete marker has no tags and size 0: a rule with a tag filter, or with
C{ObjectSizeGreaterThan}, selects none.

Over 500 lines: the document's checks (S3's errors, rule by rule), its
rendering and the due dates are one model, read and written in one place.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import json
import os
import re
from typing import Any, Optional
from xml.etree.ElementTree import Element

import attr

from s3balance.errors import S3Error
from s3balance.s3 import tagging
from s3balance.s3.xmldoc import Node, document, iso8601, parse
from s3balance.store.interfaces import LifecycleVersion, ObjectRecord, TagSet

MAX_RULES = 1000
MAX_ID = 255
MAX_NEWER_NONCURRENT = 100
ENABLED, DISABLED = "Enabled", "Disabled"

# How a rule names the objects it applies to (rendered back as it was sent).
LEGACY = "legacy"  # <Prefix> directly in the rule
EMPTY = "empty"  # <Filter/>: every object
PREFIX, TAG, GREATER, LESS, AND = "prefix", "tag", "greater", "less", "and"

_UNSUPPORTED = ("Transition", "NoncurrentVersionTransition")
_RULE_CHILDREN = frozenset({
    "ID", "Prefix", "Filter", "Status", "Expiration", "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload", *_UNSUPPORTED,
})
_DAY = datetime.timedelta(days=1)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?)?$")


@attr.s(frozen=True, auto_attribs=True)
class Filter:
    """The objects a rule applies to: all of prefix, tags and the size bounds (exclusive)."""

    kind: str = EMPTY
    prefix: str = ""
    tags: TagSet = ()
    greater: Optional[int] = None
    less: Optional[int] = None

    def matches(self, key: str, size: int, tags: TagSet) -> bool:
        if not key.startswith(self.prefix):
            return False
        if self.greater is not None and not size > self.greater:
            return False
        if self.less is not None and not size < self.less:
            return False
        if self.tags:
            held = dict(tags)
            return all(held.get(name) == value for name, value in self.tags)
        return True


@attr.s(frozen=True, auto_attribs=True)
class Rule:
    id: str
    status: str
    filter: Filter
    days: Optional[int] = None
    date: Optional[datetime.datetime] = None
    expired_object_delete_marker: Optional[bool] = None
    noncurrent_days: Optional[int] = None
    newer_noncurrent_versions: Optional[int] = None
    abort_days: Optional[int] = None

    @property
    def enabled(self) -> bool:
        return self.status == ENABLED

    @property
    def expires_objects(self) -> bool:
        """Whether the rule expires current objects (C{Expiration} with C{Days} or C{Date})."""
        return self.days is not None or self.date is not None

    @property
    def expires_versions(self) -> bool:
        """
        Whether the rule removes versions of a versioned bucket: noncurrent
        ones (C{NoncurrentVersionExpiration}) or expired object delete
        markers (C{ExpiredObjectDeleteMarker}, and C{Days} or C{Date} as on S3).
        """
        return self.noncurrent_days is not None or bool(self.expired_object_delete_marker) or self.expires_objects

    def matches(self, record: ObjectRecord) -> bool:
        return self.filter.matches(record.key, record.size, record.tags)


@attr.s(frozen=True, auto_attribs=True)
class Configuration:
    rules: tuple[Rule, ...]

    @property
    def enabled_rules(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.enabled)


# -- when --------------------------------------------------------------------------


def next_midnight(moment: datetime.datetime) -> datetime.datetime:
    """The first midnight UTC after C{moment} (S3's rounding: a midnight itself goes to the next one)."""
    utc = moment.astimezone(datetime.UTC)
    return datetime.datetime(utc.year, utc.month, utc.day, tzinfo=datetime.UTC) + _DAY


def expiry_of(rule: Rule, record: ObjectRecord) -> Optional[datetime.datetime]:
    """When C{rule} expires C{record} (None: it does not: disabled, no Days or Date, not matched)."""
    if not rule.enabled or not rule.expires_objects or not rule.matches(record):
        return None
    if rule.date is not None:
        return rule.date
    assert rule.days is not None
    return next_midnight(record.last_modified + rule.days * _DAY)


def version_expiry(rule: Rule, version: LifecycleVersion) -> Optional[datetime.datetime]:
    """
    When C{rule} removes C{version}, a noncurrent version or an expired
    object delete marker (None: it does not: disabled, not matched, one of
    the newer noncurrent versions it keeps, no action for it).
    """
    record = version.record
    if not rule.enabled or not rule.matches(record):
        return None
    if version.lone_marker:
        if rule.expired_object_delete_marker:
            return record.last_modified
        return expiry_of(rule, record)
    if rule.noncurrent_days is None or version.noncurrent_since is None:
        return None
    if rule.newer_noncurrent_versions is not None and version.newer_noncurrent < rule.newer_noncurrent_versions:
        return None
    return next_midnight(version.noncurrent_since + rule.noncurrent_days * _DAY)


def first_expiry(config: Configuration, record: ObjectRecord) -> Optional[tuple[datetime.datetime, Rule]]:
    """The earliest expiry of C{record} under C{config}'s rules, and the rule (the x-amz-expiration header's)."""
    found: Optional[tuple[datetime.datetime, Rule]] = None
    for rule in config.rules:
        when = expiry_of(rule, record)
        if when is not None and (found is None or when < found[0]):
            found = (when, rule)
    return found


def abort_due(rule: Rule, initiated: datetime.datetime) -> Optional[datetime.datetime]:
    """When C{rule} aborts an upload initiated at C{initiated} (None: it aborts none)."""
    if not rule.enabled or rule.abort_days is None:
        return None
    return next_midnight(initiated + rule.abort_days * _DAY)


def abort_headers(config: Configuration, key: str, initiated: datetime.datetime) -> dict[str, str]:
    """
    The C{x-amz-abort-date} and C{x-amz-abort-rule-id} S3 answers for a
    multipart upload of C{key} initiated at C{initiated}
    (CreateMultipartUpload, ListParts): the earliest abort of the enabled
    C{AbortIncompleteMultipartUpload} rules whose prefix it has, as the
    expirer applies them; none without such a rule.
    """
    found: Optional[tuple[datetime.datetime, Rule]] = None
    for rule in config.rules:
        when = abort_due(rule, initiated)
        if when is not None and key.startswith(rule.filter.prefix) and (found is None or when < found[0]):
            found = (when, rule)
    if found is None:
        return {}
    when, rule = found
    return {"x-amz-abort-date": email.utils.format_datetime(when, usegmt=True), "x-amz-abort-rule-id": _header_safe(rule.id)}


def _header_safe(text: str) -> str:
    """A rule's ID (the client's text) with nothing that could end a header."""
    return "".join(ch for ch in text if " " <= ch != "\x7f")


def expiration_header(config: Configuration, record: ObjectRecord) -> Optional[str]:
    """The C{x-amz-expiration} value S3 answers for C{record}, or None."""
    found = first_expiry(config, record)
    if found is None:
        return None
    when, rule = found
    stamp = email.utils.format_datetime(when, usegmt=True)
    # A rule's ID is the client's text: quoted, and nothing that could end the header.
    rule_id = _header_safe(rule.id).replace("\\", "\\\\").replace('"', '\\"')
    return f'expiry-date="{stamp}", rule-id="{rule_id}"'


# -- the XML document ------------------------------------------------------------------


def _malformed() -> S3Error:
    return S3Error("MalformedXML")


def _one(element: Element, tag: str) -> Optional[Element]:
    found = element.findall(tag)
    if len(found) > 1:
        raise _malformed()
    return found[0] if found else None


def _text(element: Element) -> str:
    if len(element):
        raise _malformed()
    return (element.text or "").strip()


def _integer(element: Element) -> int:
    text = _text(element)
    if not re.fullmatch(r"[+-]?\d{1,18}", text):
        raise _malformed()
    return int(text)


def _positive(element: Element, what: str, action: str) -> int:
    value = _integer(element)
    if value < 1:
        raise S3Error("InvalidArgument", f"'{what}' for {action} action must be a positive integer")
    return value


def _midnight(element: Element) -> datetime.datetime:
    match = _DATE.match(_text(element))
    if match is None:
        raise _malformed()
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                                   int(second or 0), tzinfo=datetime.UTC)
    except ValueError:
        raise _malformed() from None
    if zone not in (None, "Z") and zone.replace(":", "") not in ("+0000", "-0000"):
        raise S3Error("InvalidArgument", "'Date' must be at midnight GMT")
    if (moment.hour, moment.minute, moment.second) != (0, 0, 0) or (fraction and int(fraction) != 0):
        raise S3Error("InvalidArgument", "'Date' must be at midnight GMT")
    return moment


def _tag(element: Element) -> tuple[str, str]:
    keys, values = element.findall("Key"), element.findall("Value")
    if len(keys) != 1 or len(values) != 1 or len(element) != 2:
        raise _malformed()
    return (keys[0].text or "", values[0].text or "")


def _tags(pairs: list[tuple[str, str]]) -> TagSet:
    if len({key for key, _ in pairs}) != len(pairs):
        raise S3Error("InvalidRequest", "Duplicate Tag Keys are not allowed.")
    return tagging.validate(pairs, tagging.OBJECT)


def _size(element: Element) -> int:
    value = _integer(element)
    if value < 0:
        raise S3Error("InvalidArgument", f"'{element.tag}' must be a non-negative integer")
    return value


def _sizes(greater: Optional[int], less: Optional[int]) -> None:
    if greater is not None and less is not None and greater >= less:
        raise S3Error("InvalidArgument", "'ObjectSizeGreaterThan' must be less than 'ObjectSizeLessThan'")


def _filter(element: Element) -> Filter:
    children = list(element)
    if not children:
        return Filter(EMPTY)
    if len(children) != 1:
        raise _malformed()
    child = children[0]
    if child.tag == "Prefix":
        return Filter(PREFIX, prefix=child.text or "")
    if child.tag == "Tag":
        return Filter(TAG, tags=_tags([_tag(child)]))
    if child.tag == "ObjectSizeGreaterThan":
        return Filter(GREATER, greater=_size(child))
    if child.tag == "ObjectSizeLessThan":
        return Filter(LESS, less=_size(child))
    if child.tag != "And":
        raise _malformed()
    prefix: Optional[str] = None
    pairs = []
    greater: Optional[int] = None
    less: Optional[int] = None
    for part in child:
        if part.tag == "Prefix" and prefix is None:
            prefix = part.text or ""
        elif part.tag == "Tag":
            pairs.append(_tag(part))
        elif part.tag == "ObjectSizeGreaterThan" and greater is None:
            greater = _size(part)
        elif part.tag == "ObjectSizeLessThan" and less is None:
            less = _size(part)
        else:
            raise _malformed()
    _sizes(greater, less)
    return Filter(AND, prefix=prefix or "", tags=_tags(pairs), greater=greater, less=less)


def _new_id() -> str:
    """An ID for a rule sent without one, as S3 gives one (random, opaque)."""
    return base64.b64encode(os.urandom(36)).decode("ascii")


def _nonnegative(element: Element, action: str) -> None:
    if _integer(element) < 0:
        raise S3Error("InvalidArgument", f"'{element.tag}' in {action} action must be nonnegative")


def _check_transition(element: Element) -> None:
    """
    Refuse a C{Transition} or C{NoncurrentVersionTransition} S3 would refuse
    as invalid (a Date not at midnight UTC, negative days) with S3's 400,
    before the valid ones are refused as not implemented: a client learns
    that its document is wrong, not only that s3balance lacks the action.
    """
    for child in element:
        if child.tag == "Date" and element.tag == "Transition":
            _midnight(child)
        elif child.tag in ("Days", "NoncurrentDays"):
            _nonnegative(child, element.tag)


def _rule(element: Element) -> Rule:
    for child in element:
        if child.tag not in _RULE_CHILDREN:
            raise _malformed()
    for name in _UNSUPPORTED:
        for transition in element.findall(name):
            _check_transition(transition)
        if element.find(name) is not None:
            raise S3Error(
                "NotImplemented",
                f"The lifecycle action {name} (storage classes) is not implemented by s3balance.",
            )
    id_element = _one(element, "ID")
    rule_id = (id_element.text or "") if id_element is not None else ""
    if len(rule_id) > MAX_ID:
        raise S3Error("InvalidArgument", f"ID length should not exceed allowed limit of {MAX_ID}")
    status_element = _one(element, "Status")
    if status_element is None or _text(status_element) not in (ENABLED, DISABLED):
        raise _malformed()
    legacy, filter_element = _one(element, "Prefix"), _one(element, "Filter")
    if (legacy is None) == (filter_element is None):
        raise _malformed()
    if legacy is not None:
        rule_filter = Filter(LEGACY, prefix=legacy.text or "")
    else:
        assert filter_element is not None
        rule_filter = _filter(filter_element)
    values: dict[str, Any] = {}
    expiration = _one(element, "Expiration")
    if expiration is not None:
        choices = list(expiration)
        if len(choices) != 1:
            raise _malformed()
        choice = choices[0]
        if choice.tag == "Days":
            values["days"] = _positive(choice, "Days", "Expiration")
        elif choice.tag == "Date":
            values["date"] = _midnight(choice)
        elif choice.tag == "ExpiredObjectDeleteMarker":
            flag = _text(choice).lower()
            if flag not in ("true", "false"):
                raise _malformed()
            if rule_filter.tags:
                raise S3Error("InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Tags.")
            values["expired_object_delete_marker"] = flag == "true"
        else:
            raise _malformed()
    noncurrent = _one(element, "NoncurrentVersionExpiration")
    if noncurrent is not None:
        days_element = _one(noncurrent, "NoncurrentDays")
        newer = _one(noncurrent, "NewerNoncurrentVersions")
        if days_element is None or len(noncurrent) != 1 + (newer is not None):
            raise _malformed()
        values["noncurrent_days"] = _positive(days_element, "NoncurrentDays", "NoncurrentVersionExpiration")
        if newer is not None:
            count = _positive(newer, "NewerNoncurrentVersions", "NoncurrentVersionExpiration")
            if count > MAX_NEWER_NONCURRENT:
                raise S3Error(
                    "InvalidArgument",
                    f"'NewerNoncurrentVersions' for NoncurrentVersionExpiration action must not exceed "
                    f"{MAX_NEWER_NONCURRENT}",
                )
            values["newer_noncurrent_versions"] = count
    abort = _one(element, "AbortIncompleteMultipartUpload")
    if abort is not None:
        days_element = _one(abort, "DaysAfterInitiation")
        if days_element is None or len(abort) != 1:
            raise _malformed()
        values["abort_days"] = _positive(days_element, "DaysAfterInitiation", "AbortIncompleteMultipartUpload")
        if rule_filter.tags:
            raise S3Error("InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags.")
        if rule_filter.greater is not None or rule_filter.less is not None:
            raise S3Error("InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Object Size.")
    if expiration is None and noncurrent is None and abort is None:
        raise S3Error("InvalidRequest", "At least one action needs to be specified in a rule")
    return Rule(id=rule_id or _new_id(), status=_text(status_element), filter=rule_filter, **values)


def parse_document(body: bytes) -> Configuration:
    """The configuration of a PutBucketLifecycleConfiguration body, or the S3Error S3 answers for it."""
    root = parse(body)
    if root.tag != "LifecycleConfiguration":
        raise _malformed()
    elements = list(root)
    if not elements or any(element.tag != "Rule" for element in elements):
        raise _malformed()
    if len(elements) > MAX_RULES:
        raise S3Error("InvalidArgument", f"The number of rules must not exceed the allowed limit of {MAX_RULES}")
    rules = tuple(_rule(element) for element in elements)
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise S3Error("InvalidArgument", "Rule ID must be unique. Found same ID for more than one rule")
        seen.add(rule.id)
    return Configuration(rules)


def _tag_node(pair: tuple[str, str]) -> Node:
    return ("Tag", [("Key", pair[0]), ("Value", pair[1])])


def _filter_nodes(rule_filter: Filter) -> list[Node]:
    kind = rule_filter.kind
    if kind == LEGACY:
        return [("Prefix", rule_filter.prefix)]
    inner: list[Node] = []
    if kind == PREFIX:
        inner = [("Prefix", rule_filter.prefix)]
    elif kind == TAG:
        inner = [_tag_node(rule_filter.tags[0])]
    elif kind == GREATER:
        inner = [("ObjectSizeGreaterThan", rule_filter.greater)]
    elif kind == LESS:
        inner = [("ObjectSizeLessThan", rule_filter.less)]
    elif kind == AND:
        parts: list[Node] = [("Prefix", rule_filter.prefix or None)]
        parts.extend(_tag_node(pair) for pair in rule_filter.tags)
        parts.append(("ObjectSizeGreaterThan", rule_filter.greater))
        parts.append(("ObjectSizeLessThan", rule_filter.less))
        inner = [("And", parts)]
    return [("Filter", inner)]


def _rule_nodes(rule: Rule) -> list[Node]:
    nodes: list[Node] = [("ID", rule.id), *_filter_nodes(rule.filter), ("Status", rule.status)]
    if rule.days is not None:
        nodes.append(("Expiration", [("Days", rule.days)]))
    elif rule.date is not None:
        nodes.append(("Expiration", [("Date", iso8601(rule.date))]))
    elif rule.expired_object_delete_marker is not None:
        nodes.append(("Expiration", [("ExpiredObjectDeleteMarker", rule.expired_object_delete_marker)]))
    if rule.noncurrent_days is not None:
        nodes.append(("NoncurrentVersionExpiration", [
            ("NoncurrentDays", rule.noncurrent_days),
            ("NewerNoncurrentVersions", rule.newer_noncurrent_versions),
        ]))
    if rule.abort_days is not None:
        nodes.append(("AbortIncompleteMultipartUpload", [("DaysAfterInitiation", rule.abort_days)]))
    return nodes


def render(config: Configuration) -> bytes:
    """The C{<LifecycleConfiguration>} document GetBucketLifecycleConfiguration answers."""
    return document("LifecycleConfiguration", [("Rule", _rule_nodes(rule)) for rule in config.rules])


# -- as the store keeps it -----------------------------------------------------------


def dump(config: Configuration) -> str:
    """The text the store keeps for C{config} (JSON; L{load} reads it back)."""

    def rule_value(rule: Rule) -> dict[str, Any]:
        value = attr.asdict(rule, recurse=True)
        value["date"] = rule.date.isoformat() if rule.date is not None else None
        value["filter"]["tags"] = [list(pair) for pair in rule.filter.tags]
        return value

    return json.dumps({"version": 1, "rules": [rule_value(rule) for rule in config.rules]},
                      sort_keys=True, separators=(",", ":"))


def load(text: str) -> Configuration:
    """L{dump}'s inverse."""
    document_value = json.loads(text)

    def rule_of(value: dict[str, Any]) -> Rule:
        filter_value = dict(value.pop("filter"))
        filter_value["tags"] = tuple((key, tag_value) for key, tag_value in filter_value["tags"])
        date = value.pop("date")
        return Rule(filter=Filter(**filter_value),
                    date=datetime.datetime.fromisoformat(date) if date is not None else None, **value)

    return Configuration(tuple(rule_of(dict(value)) for value in document_value["rules"]))

