"""
Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus (C{/bucket?policy},
C{?policyStatus}), Put/Get/DeletePublicAccessBlock (C{?publicAccessBlock}),
and what the access decision reads of them (L{rules_of}, L{facts},
L{verdict}).

A document is checked by L{s3balance.s3.policy_document}; the store keeps the
policy as received and the Block Public Access flags as JSON.  A bucket of
the configuration has its policy and flags from there
(C{buckets[].policy}, C{buckets[].public_access_block}): the Get
operations answer them, the Put and Delete ones are refused
(C{AccessDenied}), as the configuration decides.  C{s3api.block_public_access}
adds all four flags to every bucket, as S3's account-level setting does:
GetPublicAccessBlock still answers the bucket's own.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Optional
from urllib.parse import parse_qsl

from s3balance.errors import S3Error
from s3balance.s3 import policy_actions, policy_document, policy_evaluation
from s3balance.s3.bodies import small_body
from s3balance.s3.policy_document import Policy
from s3balance.s3.policy_evaluation import BucketPolicyFacts, RequestContext
from s3balance.s3.public_access_block import (
    ALL_BLOCKED,
    NO_BLOCK,
    PUBLIC_ACCESS_BLOCK_FIELDS,
    PublicAccessBlock,
)
from s3balance.s3.xmldoc import document, parse

if TYPE_CHECKING:
    from s3balance.config.schema import Config
    from s3balance.s3.access import Caller
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import BucketRecord

def _no_policy(bucket: str) -> S3Error:
    return S3Error("NoSuchBucketPolicy", "The bucket policy does not exist", status=404, BucketName=bucket)


def _refuse_configured(gateway: GatewayLike, bucket: str, what: str) -> None:
    """AccessDenied for a change of C{what} of a bucket of the configuration: it decides them."""
    if gateway.config.virtual_bucket(bucket) is not None:
        raise S3Error(
            "AccessDenied",
            f"The {what} of bucket {bucket} is set by the s3balance configuration; change it there.",
        )


def effective_block(config: Config, own: Optional[PublicAccessBlock]) -> PublicAccessBlock:
    """The flags that apply to a bucket: its own with the gateway's (C{s3api.block_public_access})."""
    block = own or NO_BLOCK
    return block.union(ALL_BLOCKED) if config.s3api.block_public_access else block


@functools.lru_cache(maxsize=1024)
def _parsed(text: str, bucket: str) -> Policy:
    """
    A policy document as kept (checked when it was put, or when the
    configuration was loaded), parsed once: every request of its bucket is
    decided on it.
    """
    return policy_document.parse(text, bucket)


@functools.lru_cache(maxsize=1024)
def _flags(text: str) -> PublicAccessBlock:
    return PublicAccessBlock.load(text)


def rules_of(
    config: Config, bucket: str, record: Optional[BucketRecord]
) -> tuple[Optional[Policy], Optional[PublicAccessBlock]]:
    """
    Bucket C{bucket}'s own policy and Block Public Access flags: a
    configured bucket's are the configuration's, an API-created one's those
    its C{record} carries (C{IMetadataStore.get_bucket} reads them with it).
    """
    configured = config.virtual_bucket(bucket)
    if configured is not None:
        read = _parsed(configured.policy, bucket) if configured.policy is not None else None
        return read, configured.public_access_block
    if record is None:
        return None, None
    return (
        _parsed(record.policy, bucket) if record.policy is not None else None,
        _flags(record.public_access_block) if record.public_access_block is not None else None,
    )


def facts(
    config: Config, owner: str, own_policy: Optional[Policy], own_block: Optional[PublicAccessBlock]
) -> BucketPolicyFacts:
    """
    What the access decision needs of a bucket owned by C{owner} with its
    own policy and flags (L{rules_of}): the policy and the Block Public
    Access flags that apply to it (the gateway's added); give it to
    L{verdict}.
    """
    return BucketPolicyFacts(owner, own_policy, effective_block(config, own_block))


def verdict(
    facts: BucketPolicyFacts,
    call: S3Call,
    caller: Caller,
    bucket: str,
    now: float,
    existing_tags: Optional[Mapping[str, str]],
    operation: str,
    key: Optional[str],
) -> Optional[str]:
    """
    The bucket policy's verdict (L{s3balance.s3.policy_evaluation.decide_policy}:
    "Allow", "Deny", None) on C{caller} doing C{operation} on C{bucket}, or
    on its object C{key}, as C{call} asks it (L{request_context}).
    """
    context = request_context(
        call,
        caller.account,
        admin=caller.admin,
        operation=operation,
        key=key,
        client_address=call.client,
        secure=call.secure,
        now=now,
        existing_tags=existing_tags,
        bucket_owner=facts.owner,
        bucket=bucket,
    )
    return policy_evaluation.decide_policy(facts, context) if context is not None else None


def request_context(
    call: S3Call,
    account: Optional[str],
    *,
    admin: bool = False,
    operation: Optional[str] = None,
    key: Optional[str] = None,
    client_address: Optional[str] = None,
    secure: bool = False,
    now: Optional[float] = None,
    existing_tags: Optional[Mapping[str, str]] = None,
    bucket_owner: Optional[str] = None,
    bucket: Optional[str] = None,
) -> Optional[RequestContext]:
    """
    The L{RequestContext} of C{call} (None: an operation no policy speaks
    of): its action (C{operation}, default the call's), its resource (the
    object C{key}, default the call's, or the bucket; of C{bucket}, default
    the call's), the caller's
    C{account}, and the condition keys the request carries:
    C{aws:SourceIp} (C{client_address}), C{aws:SecureTransport}
    (C{secure}), C{aws:Referer}, C{aws:UserAgent}, C{aws:CurrentTime} and
    C{aws:EpochTime} (C{now}), C{aws:PrincipalAccount}, C{aws:PrincipalArn}
    and C{aws:PrincipalType}, C{s3:prefix}, C{s3:delimiter} and
    C{s3:max-keys} (listings), C{s3:x-amz-*} headers, C{s3:RequestObjectTag/*}
    and C{s3:RequestObjectTagKeys} (C{x-amz-tagging}), C{s3:ExistingObjectTag/*}
    (C{existing_tags}: the object's, read by the caller when the policy
    mentions them, L{Policy.mentions}), C{s3:signatureversion},
    C{s3:authType} and C{s3:ResourceAccount} (C{bucket_owner}).
    """
    action = policy_actions.action_of(operation or call.operation)
    if action is None or call.target.bucket is None:
        return None
    if key is None and call.target.key is not None and action[3:] in policy_actions.OBJECT_ACTIONS:
        key = call.target.key
    values: dict[str, Optional[str] | tuple[str, ...]] = {
        "aws:SourceIp": client_address,
        "aws:SecureTransport": "true" if secure else "false",
        "aws:Referer": call.header("referer"),
        "aws:UserAgent": call.header("user-agent"),
        "s3:ResourceAccount": bucket_owner,
    }
    if now is not None:
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        values["aws:CurrentTime"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        values["aws:EpochTime"] = str(int(now))
    if account is not None:
        values["aws:PrincipalAccount"] = account
        values["aws:PrincipalArn"] = f"arn:aws:iam::{account}:root"
        values["aws:PrincipalType"] = "Account"
    else:
        values["aws:PrincipalType"] = "Anonymous"
    if action in ("s3:ListBucket", "s3:ListBucketVersions"):
        for name in ("prefix", "delimiter", "max-keys"):
            if name in call.query:
                values[f"s3:{name}"] = call.query[name]
    for header in ("x-amz-acl", "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                   "x-amz-content-sha256", "x-amz-storage-class", "x-amz-copy-source",
                   "x-amz-metadata-directive", "x-amz-website-redirect-location", "x-amz-grant-read",
                   "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
                   "x-amz-grant-full-control"):
        values[f"s3:{header}"] = call.header(header)
    tagging = call.header("x-amz-tagging")
    if tagging is not None:
        tags = parse_qsl(tagging, keep_blank_values=True)
        values["s3:RequestObjectTagKeys"] = tuple(name for name, _ in tags)
        for name, value in tags:
            values[f"s3:RequestObjectTag/{name}"] = value
    for name, value in (existing_tags or {}).items():
        values[f"s3:ExistingObjectTag/{name}"] = value
    if call.auth is not None:
        values["s3:signatureversion"] = "AWS" if call.auth.signature_version == 2 else "AWS4-HMAC-SHA256"
        presigned = "X-Amz-Signature" in call.query or "Signature" in call.query
        values["s3:authType"] = "REST-QUERY-STRING" if presigned else "REST-HEADER"
    if call.operation == "PostObject":
        values["s3:authType"] = "POST"
    return RequestContext(
        action,
        policy_actions.resource_arn(bucket or call.bucket, key),
        account,
        admin=admin,
        values=policy_evaluation.context_values(values),
    )


# -- the handlers --------------------------------------------------------------------------------


async def put_bucket_policy(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Set the bucket's policy: 204, as S3; MalformedPolicy for a document S3 refuses."""
    target = await gateway.require_bucket(call)
    bucket = call.bucket
    _refuse_configured(gateway, bucket, "policy")
    read = policy_document.parse(small_body(request, call), bucket)
    if read.public and effective_block(gateway.config, target.public_access_block).block_public_policy:
        raise S3Error(
            "AccessDenied",
            f"Access Denied: public policies are blocked by the BlockPublicPolicy block public access setting "
            f"of bucket {bucket}.",
        )
    # Every bucket clients see has a row (configured ones: sync_config_buckets).
    if not await gateway.store.set_bucket_policy(bucket, read.text):
        raise S3Error("NoSuchBucket", BucketName=bucket)
    gateway.answer_empty(request, 204)


async def get_bucket_policy(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """The policy document as it was set (JSON); NoSuchBucketPolicy (404) without one, as S3."""
    own = (await gateway.require_bucket(call)).policy
    if own is None:
        raise _no_policy(call.bucket)
    gateway.answer_body(request, own.text.encode("utf-8"), b"application/json")


async def delete_bucket_policy(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Remove the policy (none: fine too): 204, as S3."""
    await gateway.require_bucket(call)
    _refuse_configured(gateway, call.bucket, "policy")
    if not await gateway.store.set_bucket_policy(call.bucket, None):
        raise S3Error("NoSuchBucket", BucketName=call.bucket)
    gateway.answer_empty(request, 204)


async def get_bucket_policy_status(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Whether S3 calls the bucket's policy public; NoSuchBucketPolicy (404) without one, as S3."""
    own = (await gateway.require_bucket(call)).policy
    if own is None:
        raise _no_policy(call.bucket)
    gateway.answer_xml(request, document("PolicyStatus", [("IsPublic", own.public)]))


def parse_public_access_block(body: bytes) -> PublicAccessBlock:
    """A C{<PublicAccessBlockConfiguration>} (each flag false when left out); MalformedXML otherwise."""
    root = parse(body)
    if root.tag.split("}")[-1] != "PublicAccessBlockConfiguration":
        raise S3Error("MalformedXML")
    flags = dict.fromkeys(PUBLIC_ACCESS_BLOCK_FIELDS, False)
    seen = set()
    for child in root:
        name = child.tag.split("}")[-1]
        if name not in flags or name in seen or len(child):
            raise S3Error("MalformedXML")
        seen.add(name)
        value = (child.text or "").strip().lower()
        if value not in ("true", "false"):
            raise S3Error("MalformedXML")
        flags[name] = value == "true"
    return PublicAccessBlock(*(flags[name] for name in PUBLIC_ACCESS_BLOCK_FIELDS))


def render_public_access_block(block: PublicAccessBlock) -> bytes:
    return document(
        "PublicAccessBlockConfiguration",
        list(zip(PUBLIC_ACCESS_BLOCK_FIELDS, block.flags(), strict=True)),
    )


async def put_public_access_block(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Set the bucket's Block Public Access flags: 200, no body, as S3."""
    await gateway.require_bucket(call)
    _refuse_configured(gateway, call.bucket, "public access block configuration")
    block = parse_public_access_block(small_body(request, call))
    if not await gateway.store.set_public_access_block(call.bucket, block.dump()):
        raise S3Error("NoSuchBucket", BucketName=call.bucket)
    gateway.answer_empty(request, 200)


async def get_public_access_block(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """The bucket's own flags; NoSuchPublicAccessBlockConfiguration (404) without them, as S3."""
    block = (await gateway.require_bucket(call)).public_access_block
    if block is None:
        raise S3Error(
            "NoSuchPublicAccessBlockConfiguration",
            "The public access block configuration was not found",
            status=404,
            BucketName=call.bucket,
        )
    gateway.answer_xml(request, render_public_access_block(block))


async def delete_public_access_block(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Remove the bucket's flags (none: fine too): 204, as S3."""
    await gateway.require_bucket(call)
    _refuse_configured(gateway, call.bucket, "public access block configuration")
    if not await gateway.store.set_public_access_block(call.bucket, None):
        raise S3Error("NoSuchBucket", BucketName=call.bucket)
    gateway.answer_empty(request, 204)


HANDLERS: dict[str, Handler] = {
    "PutBucketPolicy": put_bucket_policy,
    "GetBucketPolicy": get_bucket_policy,
    "DeleteBucketPolicy": delete_bucket_policy,
    "GetBucketPolicyStatus": get_bucket_policy_status,
    "PutPublicAccessBlock": put_public_access_block,
    "GetPublicAccessBlock": get_public_access_block,
    "DeletePublicAccessBlock": delete_public_access_block,
}
