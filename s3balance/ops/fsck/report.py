"""
What one fsck run does (L{Options}) and what it found (L{Report}).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import attr

DEFAULT_OLDER_THAN = 3600.0
DEFAULT_MAX_DROP_FRACTION = 0.01


@attr.s(auto_attribs=True)
class Options:
    repair: bool = False
    drop_missing: bool = False
    backends: Optional[Sequence[str]] = None  # None: all configured backends
    older_than: float = DEFAULT_OLDER_THAN
    concurrency: int = 8
    ignore_etag: bool = False
    # --drop-missing drops nothing when more than this fraction of the checked
    # objects look missing, unless force.
    max_drop_fraction: float = DEFAULT_MAX_DROP_FRACTION
    force: bool = False


@attr.s(auto_attribs=True)
class Counter:
    found: int = 0
    repaired: int = 0


@attr.s(auto_attribs=True)
class Report:
    """What one run found; C{differences_left} decides the exit status."""

    objects_checked: int = 0
    backend_objects_listed: int = 0
    uploads_listed: int = 0
    missing: Counter = attr.Factory(Counter)
    unverifiable: Counter = attr.Factory(Counter)
    size_mismatch: Counter = attr.Factory(Counter)
    etag_mismatch: Counter = attr.Factory(Counter)
    unknown_backend: Counter = attr.Factory(Counter)
    errors: Counter = attr.Factory(Counter)
    orphans: Counter = attr.Factory(Counter)
    orphan_uploads: Counter = attr.Factory(Counter)
    # Virtual buckets whose usage counters differ from their object rows (step 5).
    usage_drift: Counter = attr.Factory(Counter)
    # Not differences: what other applications keep in a shared real bucket.
    foreign_keys: int = 0
    foreign_uploads: int = 0
    # Why --drop-missing dropped nothing (too many look missing), or "".
    drop_refused: str = ""
    expired_intents: int = 0
    write_intents: int = 0
    queued_deletions: int = 0
    stuck_deletions: int = 0  # queued deletions that already failed at least once

    def _counters(self) -> tuple[Counter, ...]:
        return (
            self.missing,
            self.unverifiable,
            self.size_mismatch,
            self.etag_mismatch,
            self.unknown_backend,
            self.errors,
            self.orphans,
            self.orphan_uploads,
            self.usage_drift,
        )

    def differences(self) -> int:
        return sum(c.found for c in self._counters())

    def differences_left(self) -> int:
        return sum(c.found - c.repaired for c in self._counters())
