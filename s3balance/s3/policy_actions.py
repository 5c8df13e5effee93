"""
The S3 actions a bucket policy may name: those on objects, on buckets and on
no bucket; the action (C{"s3:GetObject"}) of each S3 operation s3balance
routes (L{action_of}); those the bucket owner may always take on its policy
(L{OWNER_ALWAYS}); and the ARN a statement's Resource is matched against
(L{resource_arn}).  Values only, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

ARN_PREFIX = "arn:aws:s3:::"

#
# Every action a bucket policy may name, by the resource it applies to: a
# policy naming another is refused (INVALID_ACTION), and an action naming
# no resource of its kind in its statement too (RESOURCE_MISMATCH).

OBJECT_ACTIONS = frozenset(
    """AbortMultipartUpload BypassGovernanceRetention DeleteObject DeleteObjectTagging
    DeleteObjectVersion DeleteObjectVersionTagging GetObject GetObjectAcl GetObjectAttributes
    GetObjectLegalHold GetObjectRetention GetObjectTagging GetObjectTorrent GetObjectVersion
    GetObjectVersionAcl GetObjectVersionAttributes GetObjectVersionForReplication
    GetObjectVersionTagging GetObjectVersionTorrent InitiateReplication ListMultipartUploadParts
    ObjectOwnerOverrideToBucketOwner PutObject PutObjectAcl PutObjectLegalHold PutObjectRetention
    PutObjectTagging PutObjectVersionAcl PutObjectVersionTagging ReplicateDelete ReplicateObject
    ReplicateTags RestoreObject""".split()
)
BUCKET_ACTIONS = frozenset(
    """CreateBucket DeleteBucket DeleteBucketOwnershipControls DeleteBucketPolicy DeleteBucketWebsite
    GetAccelerateConfiguration GetAnalyticsConfiguration GetBucketAcl GetBucketCORS
    GetBucketLocation GetBucketLogging GetBucketNotification GetBucketObjectLockConfiguration
    GetBucketOwnershipControls GetBucketPolicy GetBucketPolicyStatus GetBucketPublicAccessBlock
    GetBucketRequestPayment GetBucketTagging GetBucketVersioning GetBucketWebsite
    GetEncryptionConfiguration GetIntelligentTieringConfiguration GetInventoryConfiguration
    GetLifecycleConfiguration GetMetricsConfiguration GetReplicationConfiguration ListBucket
    ListBucketMultipartUploads ListBucketVersions PutAccelerateConfiguration
    PutAnalyticsConfiguration PutBucketAcl PutBucketCORS PutBucketLogging PutBucketNotification
    PutBucketObjectLockConfiguration PutBucketOwnershipControls PutBucketPolicy
    PutBucketPublicAccessBlock PutBucketRequestPayment PutBucketTagging PutBucketVersioning
    PutBucketWebsite PutEncryptionConfiguration PutIntelligentTieringConfiguration
    PutInventoryConfiguration PutLifecycleConfiguration PutMetricsConfiguration
    PutReplicationConfiguration""".split()
)
# Actions on no bucket (their resource is "*"): valid names, but never of a
# bucket policy's resources.
SERVICE_ACTIONS = frozenset({"ListAllMyBuckets"})
ALL_ACTIONS = OBJECT_ACTIONS | BUCKET_ACTIONS | SERVICE_ACTIONS
CANONICAL_ACTION = {name.lower(): name for name in ALL_ACTIONS}

# The S3 operations (as s3balance routes them, s3.routing) and the action a
# policy grants or denies them by.  DeleteObjects is s3:DeleteObject for
# each of its keys; CopyObject / UploadPartCopy need s3:GetObject on their
# source besides; a multipart upload is s3:PutObject from its start to its
# completion.
OPERATION_ACTIONS: Mapping[str, str] = {
    "ListBuckets": "s3:ListAllMyBuckets",
    "HeadBucket": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "GetBucketAcl": "s3:GetBucketAcl",
    "PutBucketAcl": "s3:PutBucketAcl",
    "GetBucketTagging": "s3:GetBucketTagging",
    "PutBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketPolicyStatus": "s3:GetBucketPolicyStatus",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "PutObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "PostObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "GetObjectAttributes": "s3:GetObjectAttributes",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "GetObjectAcl": "s3:GetObjectAcl",
    "PutObjectAcl": "s3:PutObjectAcl",
    "GetObjectTagging": "s3:GetObjectTagging",
    "PutObjectTagging": "s3:PutObjectTagging",
    "DeleteObjectTagging": "s3:DeleteObjectTagging",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "GetObjectRetention": "s3:GetObjectRetention",
    "PutObjectRetention": "s3:PutObjectRetention",
    "GetObjectLegalHold": "s3:GetObjectLegalHold",
    "PutObjectLegalHold": "s3:PutObjectLegalHold",
}

# What the bucket owner may always do, whatever its policy denies: S3 never
# locks the owning account out of its bucket's policy.
OWNER_ALWAYS = frozenset({"s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"})


def action_of(operation: str) -> Optional[str]:
    """The IAM action (C{"s3:GetObject"}) of an S3 operation; None for those no policy speaks of."""
    return OPERATION_ACTIONS.get(operation)


def resource_arn(bucket: str, key: Optional[str] = None) -> str:
    """The ARN a statement's Resource is matched against: the bucket's, or an object's."""
    return f"{ARN_PREFIX}{bucket}" if key is None else f"{ARN_PREFIX}{bucket}/{key}"
