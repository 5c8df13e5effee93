"""
Accounts and bucket ownership on the request path: who a request acts as
(L{caller_of}), which account owns a bucket (L{bucket_owner}), the one
decision whether a caller may act on a bucket (L{may_access}), and the
Owner elements answers carry (L{owner_elements}).

Every request that names a bucket reaches L{may_access} through
C{Gateway.require_bucket}; bucket ACLs and policies (issue 20, items 3 and
4) are further inputs to that same function.  Objects belong to their
bucket's owner, as on S3 with Object Ownership "bucket owner enforced" (its
default): an object's Owner is the bucket's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from attrs import frozen

if TYPE_CHECKING:
    from s3balance.config.schema import Config, Credential, S3APIConfig
    from s3balance.s3.xmldoc import Node


@frozen
class Caller:
    """
    Who a request acts as: an account id (None: anonymous) and whether its
    credential is a configuration-level admin (may do anything on every
    account's buckets).
    """

    account: Optional[str]
    admin: bool = False


@frozen
class BucketAccess:
    """
    What access decisions know of a bucket: its name and its owning account
    (resolved: never None).  Bucket ACLs and policies join it.
    """

    name: str
    owner: str


def caller_of(s3api: S3APIConfig, credential: Optional[Credential]) -> Caller:
    """
    The account C{credential} acts as.  An unsigned request (only let in
    with C{auth_required: false}) acts as the default account: such a
    gateway is open on purpose, and every request acted as that account
    before accounts existed.
    """
    if credential is None:
        return Caller(None if s3api.auth_required else s3api.default_account)
    return Caller(credential.account, credential.admin)


def bucket_owner(config: Config, name: str, recorded: Optional[str]) -> str:
    """
    The account owning bucket C{name}: a configured bucket's C{owner} (its
    recorded one is ignored: the configuration decides for its buckets),
    else the owner the store C{recorded}; C{s3api.default_owner} when
    neither names one.
    """
    configured = config.virtual_bucket(name)
    if configured is not None:
        return configured.owner or config.s3api.default_owner
    return recorded or config.s3api.default_owner


def may_access(caller: Caller, bucket: BucketAccess, action: str) -> bool:
    """
    Whether C{caller} may do C{action} (the S3 operation's name, e.g.
    "GetObject") on C{bucket}: its owner and admins may do anything; no
    other account anything, until ACLs and policies grant it.  The
    credential's own limits (C{buckets}, C{read_only}) are checked apart, at
    the headers (C{Gateway.authorize}).
    """
    if caller.admin:
        return True
    return caller.account is not None and caller.account == bucket.owner


def may_list(caller: Caller, owner: str) -> bool:
    """Whether ListBuckets shows C{caller} a bucket of C{owner}: its own (an admin: every bucket)."""
    return caller.admin or (caller.account is not None and caller.account == owner)


def owner_elements(s3api: S3APIConfig, account_id: str) -> list[Node]:
    """An Owner (or Initiator, or Grantee) element's children: the account's ID and DisplayName."""
    account = s3api.account(account_id)
    # An account no longer configured still owns its buckets: named by its id.
    return [("ID", account_id), ("DisplayName", account.display_name if account is not None else account_id)]
