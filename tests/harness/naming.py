"""Unique, valid S3 bucket names so tests sharing a server never collide."""

from __future__ import annotations

import itertools
import os
import re
import secrets

_counter = itertools.count(1)
_INVALID = re.compile(r"[^a-z0-9-]+")


def unique_bucket_name(prefix: str = "test") -> str:
    """A fresh bucket name: ``<prefix>-<pid>-<n>-<random>``, 3..63 valid chars.

    ``prefix`` is lower-cased and anything outside ``[a-z0-9-]`` becomes ``-``,
    so a test method's name can be passed as is.
    """
    clean = _INVALID.sub("-", prefix.lower()).strip("-")[:30] or "test"
    name = f"{clean}-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
    return name[:63].rstrip("-")
