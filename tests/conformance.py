"""
What the conformance tests (C{tests.test_conformance_*}) share: the daemon
of L{tests.test_acl_api} (accounts alice and bob, C{auth_required} on), a
boto3 client for each account and one that signs nothing, and assertions
on S3 answers (status and error code) from boto3 and from plain HTTP.

The conformance tests check, through s3balance, the ACL, bucket policy,
Block Public Access, POST Object and SigV2 behaviours a standard S3
conformance suite checks, each as S3 answers it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Optional

from botocore import UNSIGNED
from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.gateways import RunningGateway, http, s3_error
from tests.harness import unique_bucket_name
from tests.test_acl_api import ALICE, ALL_USERS, AUTHENTICATED_USERS, BOB, SECRETS, acl_gateway

__all__ = ["ALICE", "ALL_USERS", "AUTHENTICATED_USERS", "BOB", "SECRETS", "ConformanceCase", "grants"]


def grants(answer: dict) -> list[tuple[str, str, Optional[str], str]]:
    """
    A Get*Acl answer's grants, sorted, as (type, id or URI, display name,
    permission): the display name is checked too, as a client shows it.
    """
    found = []
    for grant in answer["Grants"]:
        grantee = grant["Grantee"]
        found.append((grantee["Type"], grantee.get("ID") or grantee.get("URI"), grantee.get("DisplayName"),
                      grant["Permission"]))
    return sorted(found)


def owner_grant(permission: str = "FULL_CONTROL", account: str = ALICE) -> tuple[str, str, str, str]:
    """One account's grant as L{grants} lists it."""
    return ("CanonicalUser", account, {ALICE: "alice", BOB: "bob"}[account], permission)


def group_grant(uri: str, permission: str) -> tuple[str, str, None, str]:
    """One group's grant as L{grants} lists it."""
    return ("Group", uri, None, permission)


class ConformanceCase(SynchronousTestCase):
    """
    A test on the shared daemon, with C{self.alice}, C{self.bob} and
    C{self.nobody} (unsigned) boto3 clients.
    """

    gateway: RunningGateway

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        acl_gateway.share_with(cls.__module__)

    def setUp(self) -> None:
        self.gateway = acl_gateway()
        self.alice = self.gateway.client("alice", SECRETS["alice"])
        self.bob = self.gateway.client("bob", SECRETS["bob"])
        self.nobody = self.gateway.client("nobody", "unused", signature_version=UNSIGNED)

    def new_bucket(self, acl: Optional[str] = None, client: Any = None) -> str:
        """A new bucket of alice's (or C{client}'s), with the canned ACL C{acl} if given."""
        name = unique_bucket_name("conf")
        extra = {"ACL": acl} if acl else {}
        (client or self.alice).create_bucket(Bucket=name, **extra)
        return name

    def url(self, bucket: str, key: str = "", query: str = "") -> str:
        import urllib.parse

        path = f"/{bucket}" + (f"/{urllib.parse.quote(key)}" if key else "")
        return f"{self.gateway.endpoint}{path}" + (f"?{query}" if query else "")

    def assertS3Error(self, status: int, code: Optional[str], call: Callable[..., Any], *args: Any,
                      **kwargs: Any) -> ClientError:
        """C{call} fails with C{status} and, unless None (HEAD answers have no body), the error C{code}."""
        with self.assertRaises(ClientError) as raised:
            call(*args, **kwargs)
        response = raised.exception.response
        self.assertEqual(response["ResponseMetadata"]["HTTPStatusCode"], status, response)
        if code is not None:
            self.assertEqual(response["Error"]["Code"], code, response)
        return raised.exception

    def assertDenied(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """C{call} answers 403 AccessDenied (403 alone for a HEAD)."""
        head = getattr(call, "__name__", "").startswith("head_")
        self.assertS3Error(403, None if head else "AccessDenied", call, *args, **kwargs)

    def assertHTTP(self, status: int, code: Optional[str], method: str, url: str, body: Optional[bytes] = None,
                   headers: Optional[dict] = None) -> bytes:
        """A plain HTTP request answers C{status} (and the error C{code}, if given); its body."""
        got, _, answer = http(method, url, body, headers)
        self.assertEqual(got, status, answer)
        if code is not None:
            self.assertEqual(s3_error(answer)[0], code, answer)
        return answer

    def put_policy(self, bucket: str, *statements: dict, client: Any = None) -> None:
        """Put a 2012-10-17 policy of C{statements} on C{bucket}."""
        document = {"Version": "2012-10-17", "Statement": list(statements)}
        (client or self.alice).put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))


def statement(action: Any, resource: Any, *, effect: str = "Allow", principal: Any = None,
              condition: Optional[dict] = None) -> dict:
    """A policy statement, to everyone (C{{"AWS": "*"}}) unless C{principal} says."""
    found = {"Effect": effect, "Principal": principal if principal is not None else {"AWS": "*"},
             "Action": action, "Resource": resource}
    if condition is not None:
        found["Condition"] = condition
    return found


def arn(bucket: str, key: Optional[str] = None) -> str:
    """The ARN of a bucket, or of its keys matching C{key}."""
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")
