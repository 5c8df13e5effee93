"""
Accounts, bucket ownership and the one access decision on the request path:
who a request acts as (L{caller_of}), which account owns a bucket
(L{bucket_owner}) and what its ACL grants (L{bucket_acl}), whether a caller
may do an action (L{decide}), and the Owner elements answers carry
(L{owner_elements}).

Every request that names a bucket reaches L{decide} through
C{Gateway.require_bucket} (L{admit}).  An action on one object (GetObject,
HeadObject, GetObjectAttributes, Get/PutObjectAcl, a copy's source read)
may be granted by that object's ACL, which only its row holds: L{admit}
lets such a request on to the object's lookup, marked
(C{BucketAccess.awaiting_object}), and the handler decides once it has the
row (L{require_object}, L{missing_object}).

Objects belong to their bucket's owner (see L{s3balance.s3.acl}): its owner
and admins may do anything on them, as on the bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Optional

import attrs
from attrs import frozen

from s3balance.errors import S3Error
from s3balance.s3 import acl as acls

if TYPE_CHECKING:
    from s3balance.config.schema import Config, Credential, S3APIConfig
    from s3balance.s3.policy_document import Policy
    from s3balance.s3.public_access_block import PublicAccessBlock
    from s3balance.s3.xmldoc import Node
    from s3balance.store.interfaces import IMetadataStore, ObjectRecord


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
    What access decisions know of a bucket: its name, its owning account
    (resolved: never None) and its ACL's grants.

    C{awaiting_object} is set (to the caller) by L{admit} when the caller's
    action on one object is not allowed by the bucket alone and that
    object's ACL may still allow it: the handler must then decide with the
    object's row (L{require_object}, L{missing_object}).
    """

    name: str
    owner: str
    acl: acls.ACL = ()
    awaiting_object: Optional[Caller] = None
    # The bucket policy's verdict (s3.policy_evaluation.decide_policy: "Allow", "Deny"
    # or None) on the request's action, and on listing the bucket (what
    # L{missing_object} asks) when that action is on one object.
    verdict: Optional[str] = None
    list_verdict: Optional[str] = None
    # Who L{admit} let in by a grant or a policy (None: the owner, an admin,
    # or no decision made): what L{missing_object} asks about.
    caller: Optional[Caller] = None
    # With a policy, the policy's verdict on an action on one key (a
    # DeleteObjects request is decided per key, L{may_delete_key}); None
    # without a policy.
    verdict_on_key: Optional[Callable[[str, str], Optional[str]]] = attrs.field(default=None, eq=False)
    # The bucket's own policy and Block Public Access flags (None: none),
    # as read with it: what the policy operations answer.
    policy: Optional[Policy] = attrs.field(default=None, eq=False)
    public_access_block: Optional[PublicAccessBlock] = None
    # Its versioning status (None: never versioned): whether answers about
    # its objects carry x-amz-version-id (s3.versioning).
    versioning: Optional[str] = None
    # Its Object Lock configuration as kept (s3.object_lock; None: none).
    object_lock: Optional[str] = None
    # Block Public Access: public ACL grants grant nothing (IgnorePublicAcls);
    # a request setting a public ACL is refused (BlockPublicAcls, L{refuse_public_acl}).
    ignore_public_acls: bool = False
    block_public_acls: bool = False


# What each ACL permission allows, S3's mapping of permissions to
# operations: on a bucket, READ lists it, WRITE creates, overwrites and
# deletes any of its objects (multipart uploads included), READ_ACP and
# WRITE_ACP read and replace its ACL; on an object, READ reads it and
# READ_ACP / WRITE_ACP its ACL.  FULL_CONTROL is all of them.  Every other
# operation (tagging, lifecycle, deletion of the bucket, ...) is the
# owner's only.
BUCKET_PERMISSIONS: Mapping[str, str] = {
    "HeadBucket": acls.READ,
    "ListObjects": acls.READ,
    "ListObjectsV2": acls.READ,
    "ListObjectVersions": acls.READ,
    "ListMultipartUploads": acls.READ,
    "PutObject": acls.WRITE,
    "PostObject": acls.WRITE,
    "CopyObject": acls.WRITE,
    "DeleteObject": acls.WRITE,
    "DeleteObjects": acls.WRITE,
    "CreateMultipartUpload": acls.WRITE,
    "UploadPart": acls.WRITE,
    "UploadPartCopy": acls.WRITE,
    "CompleteMultipartUpload": acls.WRITE,
    "AbortMultipartUpload": acls.WRITE,
    "ListParts": acls.WRITE,
    "GetBucketAcl": acls.READ_ACP,
    "PutBucketAcl": acls.WRITE_ACP,
}
OBJECT_PERMISSIONS: Mapping[str, str] = {
    "GetObject": acls.READ,
    "HeadObject": acls.READ,
    "GetObjectAttributes": acls.READ,
    "GetObjectAcl": acls.READ_ACP,
    "PutObjectAcl": acls.WRITE_ACP,
}


def caller_of(s3api: S3APIConfig, credential: Optional[Credential]) -> Caller:
    """
    The account C{credential} acts as.  An unsigned request acts as nobody
    (C{Caller(None)}: only grants to AllUsers let it in), except on a
    gateway with C{auth_required: false}, open on purpose, where it acts as
    the default account, as every request did before accounts existed.
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


def bucket_acl(config: Config, name: str, owner: str, recorded: Optional[str]) -> acls.ACL:
    """
    Bucket C{name}'s ACL: a configured bucket's is its C{acl} (a canned ACL,
    private when it names none; the configuration decides for its buckets,
    as for their owner), else the one the store C{recorded} (L{acls.dump}).
    """
    configured = config.virtual_bucket(name)
    if configured is not None:
        return acls.canned(configured.acl or "private", owner)
    return acls.load(recorded, owner)


def decide(
    caller: Caller,
    bucket: BucketAccess,
    action: str,
    object_acl: Optional[acls.ACL] = None,
    verdict: Optional[str] = None,
) -> bool:
    """
    Whether C{caller} may do C{action} (the S3 operation's name, e.g.
    "GetObject") on C{bucket} or, for an action on one object, on the
    object whose ACL is C{object_acl} (None: not known, private), given the
    bucket policy's C{verdict} on it (L{s3balance.s3.policy_evaluation.decide_policy}).

    In S3's order: an explicit Deny of the policy wins over every Allow,
    the owner's too (the policy's own operations excepted, which
    C{decide_policy} never denies its owner); then any Allow: the bucket's
    owner may do anything, others what the policy allows or the bucket's
    ACL (or the object's, for an action on an object) grants them, public
    grants left out under IgnorePublicAcls; nothing else is allowed.  A
    configuration-level admin is the operator: no policy binds it.  The
    credential's own limits (C{buckets}, C{read_only}) are checked apart,
    at the headers (C{Gateway.authorize}).
    """
    if caller.admin:
        return True
    if verdict == "Deny":
        return False
    if (caller.account is not None and caller.account == bucket.owner) or verdict == "Allow":
        return True
    needed = OBJECT_PERMISSIONS.get(action)
    if needed is not None:
        granted_by = object_acl
    else:
        needed = BUCKET_PERMISSIONS.get(action)
        granted_by = bucket.acl
    if needed is None or not granted_by:
        return False
    if bucket.ignore_public_acls:
        granted_by = tuple(grant for grant in granted_by if grant.grantee.kind != acls.GROUP)
    granted = acls.permissions_of(granted_by, caller.account)
    return needed in granted or acls.FULL_CONTROL in granted


def refuse_public_acl(bucket: BucketAccess, acl: Optional[acls.ACL]) -> None:
    """
    AccessDenied for a request setting C{acl} (None: none asked) on
    C{bucket} or one of its objects when the ACL is public (grants to
    AllUsers or AuthenticatedUsers) and Block Public Access's
    BlockPublicAcls applies to the bucket, as S3 refuses it.
    """
    if bucket.block_public_acls and acl and any(grant.grantee.kind == acls.GROUP for grant in acl):
        raise S3Error("AccessDenied", "Public ACLs are blocked on this bucket (Block Public Access).")


def admit(caller: Caller, bucket: BucketAccess, action: str) -> BucketAccess:
    """
    The bucket-level decision: C{bucket} when C{caller} may do C{action}
    (with the caller, when not its owner or an admin); for an action on
    one object that only the object's ACL may still allow, C{bucket} marked
    as awaiting that object (see L{BucketAccess}); AccessDenied otherwise.
    """
    if action == "DeleteObjects" and bucket.verdict_on_key is not None:
        # Decided key by key (s3:DeleteObject on each), L{may_delete_key}.
        return bucket if caller.admin else attrs.evolve(bucket, caller=caller)
    if decide(caller, bucket, action, verdict=bucket.verdict):
        if caller.admin or (caller.account is not None and caller.account == bucket.owner):
            return bucket
        return attrs.evolve(bucket, caller=caller)
    if bucket.verdict != "Deny" and action in OBJECT_PERMISSIONS:
        return attrs.evolve(bucket, caller=caller, awaiting_object=caller)
    raise S3Error("AccessDenied")


def may_delete_key(bucket: BucketAccess, key: str) -> bool:
    """
    Whether the caller L{admit} let into a DeleteObjects request may delete
    C{key}: as a DeleteObject of that key would be decided (its policy's
    verdict on that key, then ownership and the bucket's ACL).
    """
    caller = bucket.caller
    if caller is None or bucket.verdict_on_key is None:
        return True
    return decide(caller, bucket, "DeleteObject", verdict=bucket.verdict_on_key("DeleteObject", key))


def require_object(bucket: BucketAccess, action: str, object_acl: Optional[str]) -> None:
    """
    The object-level decision, once the object's row is read: AccessDenied
    unless L{admit} settled it or the object's ACL (its C{acl} column, see
    L{acls.dump}) grants C{action}.
    """
    caller = bucket.awaiting_object
    if caller is not None and not decide(
        caller, bucket, action, acls.load(object_acl, bucket.owner), verdict=bucket.verdict
    ):
        raise S3Error("AccessDenied")


async def read_object(store: IMetadataStore, bucket: BucketAccess, key: str, action: str) -> ObjectRecord:
    """
    Object C{key} of C{bucket} (as L{admit} let the caller in), read for
    C{action} on it: L{missing_object}'s answer when there is none,
    AccessDenied unless the caller may (L{require_object}).
    """
    record = await store.get_object(bucket.name, key)
    if record is None:
        raise missing_object(bucket, key)
    require_object(bucket, action, record.acl)
    return record


def missing_object(bucket: BucketAccess, key: str) -> S3Error:
    """
    The answer for a key that does not exist: NoSuchKey to a caller who may
    list the bucket (who could learn it anyway), AccessDenied to anyone
    else, as S3 answers, so a key's existence does not leak.
    """
    caller = bucket.caller
    if caller is None or decide(caller, bucket, "ListObjects", verdict=bucket.list_verdict):
        return S3Error("NoSuchKey", Key=key)
    return S3Error("AccessDenied")


def may_list(caller: Caller, owner: str) -> bool:
    """Whether ListBuckets shows C{caller} a bucket of C{owner}: its own (an admin: every bucket)."""
    return caller.admin or (caller.account is not None and caller.account == owner)


def owner_elements(s3api: S3APIConfig, account_id: str) -> list[Node]:
    """An Owner (or Initiator, or Grantee) element's children: the account's ID and DisplayName."""
    account = s3api.account(account_id)
    # An account no longer configured still owns its buckets: named by its id.
    return [("ID", account_id), ("DisplayName", account.display_name if account is not None else account_id)]
