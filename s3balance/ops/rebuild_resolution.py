"""
How the copies of one virtual key that C{s3balance-admin rebuild} finds on
the backends resolve into what it records (L{s3balance.ops.rebuild}
describes the rules): a copy as the resolution keeps it (L{Seen}), what a
key or one of its versions resolves to (L{Kept}), the resolution of one
key's copies into one version (L{resolve}) or, in a bucket that keeps
versions, into all its versions (L{resolve_versions}), and the copies of
such a key gathered while the backends are read (L{Gathered}).  Values and
pure functions, no I/O; the outcome never depends on the order the copies
were met in.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Optional

import attr

from s3balance.ops.adopt import (
    BackendCopy,
)
from s3balance.store.interfaces import Location
from s3balance.store.versions import COMPLIANCE, GOVERNANCE

NEW = "new"  # recorded by this run (or, dry run, would be)
PRESENT = "present"  # the database had the key before (--force): left as it is


def bare_etag(etag: str) -> str:
    """An ETag as compared between copies: quotes off, lower case."""
    return etag.strip().removeprefix("W/").strip('"').lower()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Seen:
    """A copy as the resolution keeps it (its headers go into the row when it is met, and are not kept)."""

    backend: str
    real_key: str
    size: int
    etag: str  # quoted, as the store keeps it
    last_modified: datetime.datetime
    listed: datetime.datetime
    # Its Object Lock on its backend (L{BackendCopy}); not part of the version.
    lock_mode: Optional[str] = None
    lock_until: Optional[datetime.datetime] = None
    legal_hold: bool = False

    @classmethod
    def of(cls, copy: BackendCopy) -> Seen:
        return cls(
            copy.backend, copy.real_key, copy.size, copy.etag, copy.last_modified, copy.listed,
            copy.lock_mode, copy.lock_until, copy.legal_hold,
        )

    def newness(self) -> tuple[datetime.datetime, datetime.datetime, str, str]:
        """As L{BackendCopy.newness}: newest last; on equal times by backend and real key."""
        return (self.last_modified, self.listed, self.backend, self.real_key)

    @property
    def version(self) -> tuple[int, str]:
        """What copies of one version share: the size and the ETag (bare)."""
        return (self.size, bare_etag(self.etag))

    @property
    def location(self) -> Location:
        return Location(self.backend, self.real_key)


@attr.s(auto_attribs=True)
class Kept:
    """What a virtual key (or one version of it) resolves to so far."""

    copies: tuple[Seen, ...]  # its locations, oldest copy first (the primary)
    newest: Seen  # the copy the row's size, ETag, headers and Last-Modified are from
    state: str  # NEW or PRESENT
    version_id: Optional[str] = None  # the version id it was recorded with (buckets that keep versions)

    @property
    def newness(self) -> tuple[datetime.datetime, datetime.datetime, str, str]:
        return self.newest.newness()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Lock:
    """A version's Object Lock: retention mode (None: none), retain-until date, legal hold."""

    mode: Optional[str]
    until: Optional[datetime.datetime]
    legal_hold: bool


def strongest_lock(copies: Sequence[Seen]) -> Optional[Lock]:
    """
    The Object Lock a version's copies carry on their backends (None: none
    does).  Copies of one version carry the same, unless a change missed a
    backend: then the strongest of them, so that the rebuild never weakens
    a lock (the latest retain-until date, COMPLIANCE over GOVERNANCE, the
    legal hold when any copy has it).
    """
    retained = [c for c in copies if c.lock_mode is not None and c.lock_until is not None]
    held = any(c.legal_hold for c in copies)
    if not retained and not held:
        return None
    if not retained:
        return Lock(None, None, held)
    mode = COMPLIANCE if any(c.lock_mode == COMPLIANCE for c in retained) else GOVERNANCE
    return Lock(mode, max(c.lock_until for c in retained if c.lock_until is not None), held)


def resolve(copies: Sequence[Seen], wanted: int) -> tuple[tuple[Seen, ...], Seen, list[Seen]]:
    """
    (locations, newest copy, the rest) of one virtual key's copies: the
    version (size and ETag) of the newest copy wins; of its copies, the
    newest on each backend, and of those the C{wanted} newest (the bucket's
    replicas), oldest first.  The rest are older versions, older copies on
    a backend that keeps a newer one, and surplus copies.  The outcome does
    not depend on the order the copies were met in.
    """
    newest = max(copies, key=Seen.newness)
    per_backend: dict[str, Seen] = {}
    for copy in copies:
        if copy.version == newest.version:
            held = per_backend.get(copy.backend)
            if held is None or copy.newness() > held.newness():
                per_backend[copy.backend] = copy
    chosen = sorted(per_backend.values(), key=Seen.newness, reverse=True)[: max(1, wanted)]
    chosen.sort(key=Seen.newness)
    taken = set(chosen)
    return tuple(chosen), newest, [copy for copy in copies if copy not in taken]


def resolve_versions(
    copies: Sequence[Seen], wanted: int
) -> tuple[list[tuple[tuple[Seen, ...], Seen]], list[Seen]]:
    """
    (versions, the rest) of one virtual key's copies, for a bucket that
    keeps versions: each version (size and ETag) resolved as by L{resolve},
    (locations, newest copy), ordered by their newest copies' Last-Modified,
    oldest first (the last is the version of the newest copy: the latest);
    the rest are older copies of a version on a backend that keeps a newer
    one, and surplus copies.  Independent of the order the copies were met in.
    """
    by_version: dict[tuple[int, str], list[Seen]] = {}
    for copy in copies:
        by_version.setdefault(copy.version, []).append(copy)
    versions: list[tuple[tuple[Seen, ...], Seen]] = []
    rest: list[Seen] = []
    for group in by_version.values():
        chosen, newest, left = resolve(group, wanted)
        versions.append((chosen, newest))
        rest.extend(left)
    versions.sort(key=lambda version: version[1].newness())
    return versions, rest


@attr.s(auto_attribs=True)
class Gathered:
    """
    The copies of a key of a bucket that keeps versions, met so far: they
    are recorded once every backend was read.  Of each version only the
    newest copy is kept whole (its headers go into the version's row).
    """

    copies: list[Seen] = attr.Factory(list)
    newest: dict[tuple[int, str], BackendCopy] = attr.Factory(dict)

    def add(self, copy: BackendCopy) -> None:
        seen = Seen.of(copy)
        self.copies.append(seen)
        held = self.newest.get(seen.version)
        if held is None or copy.newness() > held.newness():
            self.newest[seen.version] = copy


