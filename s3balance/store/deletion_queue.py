"""
Queueing a backend copy for deletion: every path that lets bytes go (a
replaced or deleted version, an abandoned or expired write, an aborted
upload) queues them here, in its own transaction; the deletion worker
carries them out later, and first asks L{objects.is_referenced} whether
anything still refers to them.
"""

from __future__ import annotations

import datetime
from typing import Optional

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from s3balance.store import tables

# Replaced and deleted copies wait this long (the store's deletion_grace) so
# that reads which found them just before are not cut off.
NO_GRACE = datetime.timedelta(0)

REASON_REPLACED = "replaced"
REASON_DELETED = "deleted"
REASON_ABANDONED = "abandoned"
REASON_LEASE_EXPIRED = "lease-expired"
REASON_MULTIPART_ABORTED = "multipart-aborted"

_INSERT_DELETION = insert(tables.deletion_queue)


def queue_deletion(
    conn: Connection,
    backend: str,
    real_key: str,
    reason: str,
    now: datetime.datetime,
    backend_upload_id: Optional[str] = None,
    grace: datetime.timedelta = NO_GRACE,
) -> None:
    conn.execute(
        _INSERT_DELETION,
        {
            "backend": backend,
            "real_key": real_key,
            "backend_upload_id": backend_upload_id,
            "reason": reason,
            "attempts": 0,
            "due": now + grace,
            "created": now,
        },
    )
