"""
Block Public Access: a bucket's four flags (PutPublicAccessBlock) or the
gateway's, as the store and the configuration keep them (L{PublicAccessBlock};
what they do to a request: L{s3balance.s3.policy_evaluation.decide_policy}
and the ACL checks).
"""

from __future__ import annotations

import json

from attrs import frozen

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
