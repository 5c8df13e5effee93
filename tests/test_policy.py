"""
Bucket policies (s3balance.s3.policy_document, policy_actions,
policy_conditions, policy_evaluation, public_access_block), pure: the
documents S3 accepts and refuses (with its messages), evaluation
(Principal, Action, Resource, Condition operators and keys, explicit Deny),
what S3 calls public, Block Public Access in L{decide_policy}; and fuzzed
documents that never raise anything but the S3 error nor widen access.
"""

from __future__ import annotations

import json
import random
from typing import Any, Optional

from twisted.trial.unittest import SynchronousTestCase

from s3balance.errors import S3Error
from s3balance.s3.policy_actions import ALL_ACTIONS, action_of, resource_arn
from s3balance.s3.policy_document import MAX_POLICY_BYTES, is_public, parse
from s3balance.s3.policy_evaluation import (
    BucketPolicyFacts,
    RequestContext,
    context_values,
    decide_policy,
    evaluate,
)
from s3balance.s3.public_access_block import ALL_BLOCKED, PublicAccessBlock

BUCKET = "photos"
ALICE = "111111111111"
BOB = "222222222222"


def document(*statements: dict, version: Optional[str] = "2012-10-17", **top: Any) -> bytes:
    raw: dict[str, Any] = {}
    if version is not None:
        raw["Version"] = version
    raw.update(top)
    raw["Statement"] = list(statements)
    return json.dumps(raw).encode()


def statement(effect: str = "Allow", principal: Any = "*", action: Any = "s3:GetObject",
              resource: Any = f"arn:aws:s3:::{BUCKET}/*", **more: Any) -> dict:
    found = {"Effect": effect, "Principal": principal, "Action": action, "Resource": resource}
    found.update(more)
    return found


def request(action: str = "s3:GetObject", key: Optional[str] = "a.jpg", account: Optional[str] = None,
            **values: Any) -> RequestContext:
    return RequestContext(action, resource_arn(BUCKET, key), account,
                          values=context_values({k.replace("_", ":", 1): v for k, v in values.items()}))


class ParseTests(SynchronousTestCase):
    def refused(self, body: bytes, message: str, code: str = "MalformedPolicy") -> None:
        with self.assertRaises(S3Error) as raised:
            parse(body, BUCKET)
        self.assertEqual((raised.exception.code, raised.exception.status, raised.exception.message),
                         (code, 400, message))

    def test_a_public_read_policy_is_read(self) -> None:
        body = document(statement(Sid="PublicRead"), Id="p1")
        read = parse(body, BUCKET)
        self.assertEqual((read.version, read.id, read.bucket, read.text), ("2012-10-17", "p1", BUCKET, body.decode()))
        (only,) = read.statements
        self.assertEqual((only.sid, only.effect, only.principals.everyone, only.actions),
                         ("PublicRead", "Allow", True, ("s3:getobject",)))

    def test_statement_may_be_one_object_and_version_may_be_absent(self) -> None:
        read = parse(json.dumps({"Statement": statement()}).encode(), BUCKET)
        self.assertEqual((read.version, len(read.statements)), ("2008-10-17", 1))

    def test_principal_forms(self) -> None:
        for principal, everyone, accounts in [
            ("*", True, set()),
            ({"AWS": "*"}, True, set()),
            ({"AWS": f"arn:aws:iam::{ALICE}:root"}, False, {ALICE}),
            ({"AWS": [ALICE, f"arn:aws:iam::{BOB}:root"]}, False, {ALICE, BOB}),
        ]:
            (read,) = parse(document(statement(principal=principal)), BUCKET).statements
            self.assertEqual((read.principals.everyone, set(read.principals.accounts)), (everyone, accounts))

    def test_not_principal_not_action_not_resource(self) -> None:
        body = document({"Effect": "Deny", "NotPrincipal": {"AWS": ALICE}, "NotAction": "s3:Get*",
                         "NotResource": f"arn:aws:s3:::{BUCKET}/public/*"})
        (read,) = parse(body, BUCKET).statements
        self.assertEqual((read.not_principal, read.not_action, read.not_resource), (True, True, True))

    def test_not_json_or_not_an_object(self) -> None:
        self.refused(b"", "Policies must be valid JSON and the first byte must be '{'")
        self.refused(b' {"Statement": []}', "Policies must be valid JSON and the first byte must be '{'")
        self.refused(b"[]", "Policies must be valid JSON and the first byte must be '{'")
        self.refused(b"{", "This policy contains invalid Json")
        self.refused(b'{"Statement": NaN}', "This policy contains invalid Json")
        self.refused(b'{"a": "\xff"}', "This policy contains invalid Json")
        self.refused(b"{" * 100000, "This policy contains invalid Json")

    def test_document_level_errors(self) -> None:
        self.refused(b"{}", "Missing required field Statement")
        self.refused(document(), "Could not parse the policy: Statement is empty!")
        self.refused(document(statement(), version="2020-01-01"), "The policy must contain a valid version string")
        self.refused(document(statement(), Foo=1), "Unknown field Foo")
        self.refused(document(statement(), Id=5), "This policy contains invalid Json")
        self.refused(b'{"Statement": "x"}', "This policy contains invalid Json")
        self.refused(b'{"Statement": ["x"]}', "This policy contains invalid Json")

    def test_statement_errors(self) -> None:
        missing_effect = statement()
        del missing_effect["Effect"]
        self.refused(document(missing_effect), "Missing required field Effect")
        self.refused(document(statement(effect="allow")), "Invalid effect: allow")
        self.refused(document(statement(Conditon={})), "Unknown field Conditon")
        no_principal = statement()
        del no_principal["Principal"]
        self.refused(document(no_principal), "Missing required field Principal")
        no_action = statement()
        del no_action["Action"]
        self.refused(document(no_action), "Missing required field Action")
        no_resource = statement()
        del no_resource["Resource"]
        self.refused(document(no_resource), "Missing required field Resource")

    def test_invalid_principals(self) -> None:
        for principal in ["alice", ALICE, {"AWS": "alice"}, {"AWS": []}, {"Service": "s3.amazonaws.com"},
                          {"AWS": f"arn:aws:iam::{ALICE}:user/bob"}, {"AWS": "arn:aws:iam::*:root"}, 5]:
            self.refused(document(statement(principal=principal)), "Invalid principal in policy")

    def test_not_principal_only_with_deny(self) -> None:
        allow_all_but_alice = {"Effect": "Allow", "NotPrincipal": {"AWS": ALICE}, "Action": "s3:GetObject",
                               "Resource": f"arn:aws:s3:::{BUCKET}/*"}
        self.refused(document(allow_all_but_alice), "Invalid principal in policy")
        parse(document(dict(allow_all_but_alice, Effect="Deny")), BUCKET)

    def test_invalid_actions(self) -> None:
        for action in ["GetObject", "s3:Nothing", "s3:Nothing*", "ec2:RunInstances", [], [5], "s3:"]:
            self.refused(document(statement(action=action)), "Policy has invalid action")
        # Names and the service prefix are case-insensitive; wildcards match some action.
        for action in ["S3:getobject", "s3:Get*", "s3:*", "*", "s3:GetObject?ersion"]:
            parse(document(statement(action=action)), BUCKET)

    def test_invalid_resources(self) -> None:
        for resource in ["*", "arn:aws:s3:::other/*", "arn:aws:s3:::photos2/*", "photos/*", "arn:aws:s3:::*",
                         "arn:aws:s3:::pho*/*", [], [None]]:
            self.refused(document(statement(resource=resource)), "Policy has invalid resource")

    def test_actions_must_apply_to_a_resource(self) -> None:
        mismatch = "Action does not apply to any resource(s) in statement"
        self.refused(document(statement(action="s3:ListBucket")), mismatch)
        self.refused(document(statement(action="s3:GetObject", resource=f"arn:aws:s3:::{BUCKET}")), mismatch)
        self.refused(document(statement(action=["s3:GetObject", "s3:ListBucket"])), mismatch)
        self.refused(document(statement(action="s3:ListAllMyBuckets")), mismatch)
        parse(document(statement(action=["s3:GetObject", "s3:ListBucket"],
                                 resource=[f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"])), BUCKET)
        # Wildcards are not held to it.
        parse(document(statement(action="s3:*")), BUCKET)

    def test_condition_errors(self) -> None:
        def with_condition(condition: Any, action: Any = "s3:GetObject") -> bytes:
            return document(statement(action=action, Condition=condition))

        self.refused(with_condition({"StringEqualz": {"aws:Referer": "x"}}), "Invalid Condition type : StringEqualz")
        self.refused(with_condition({"stringequals": {"aws:Referer": "x"}}), "Invalid Condition type : stringequals")
        self.refused(with_condition({"ForSomeValues:StringEquals": {"aws:Referer": "x"}}),
                     "Invalid Condition type : ForSomeValues:StringEquals")
        self.refused(with_condition({"NullIfExists": {"aws:Referer": "true"}}), "Invalid Condition type : NullIfExists")
        self.refused(with_condition({"StringEquals": {"aws:Nothing": "x"}}), "Policy has an invalid condition key")
        self.refused(with_condition({"StringEquals": {"s3:ExistingObjectTag/": "x"}}),
                     "Policy has an invalid condition key")
        self.refused(with_condition({"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}}), "Invalid IP address in Conditions")
        self.refused(with_condition({"StringEquals": {"aws:SourceIp": "nowhere"}}), "Invalid IP address in Conditions")
        self.refused(with_condition({"StringEquals": {"s3:prefix": "home/"}}),
                     "Conditions do not apply to combination of actions and resources in statement")
        self.refused(with_condition({"Bool": {"aws:SecureTransport": "yes"}}),
                     "Invalid value for Bool condition: yes")
        self.refused(with_condition({"NumericLessThan": {"s3:max-keys": "ten"}}, "s3:*"),
                     "Invalid value for NumericLessThan condition: ten")
        self.refused(with_condition({"DateLessThan": {"aws:CurrentTime": "tomorrow"}}),
                     "Invalid value for DateLessThan condition: tomorrow")
        self.refused(with_condition("x"), "This policy contains invalid Json")
        self.refused(with_condition({"StringEquals": "x"}), "This policy contains invalid Json")
        self.refused(with_condition({"StringEquals": {"aws:Referer": {"x": 1}}}), "This policy contains invalid Json")

    def test_conditions_read(self) -> None:
        body = document(statement(Condition={
            "ForAnyValue:StringLikeIfExists": {"AWS:Referer": ["https://a/*", True, 3]},
            "StringEquals": {"s3:ExistingObjectTag/Class": "public"},
        }))
        (read,) = parse(body, BUCKET).statements
        first, second = read.conditions
        self.assertEqual((first.operator, first.qualifier, first.if_exists, first.key, first.values),
                         ("StringLike", "ForAnyValue", True, "aws:referer", ("https://a/*", "true", "3")))
        self.assertEqual((second.key, second.values), ("s3:existingobjecttag/Class", ("public",)))

    def test_size_limit_counts_the_document_without_whitespace(self) -> None:
        sids = [statement(Sid=f"S{i:05d}") for i in range(130)]
        compact = json.dumps({"Version": "2012-10-17", "Statement": sids}, separators=(",", ":")).encode()
        self.assertLess(len(compact), MAX_POLICY_BYTES)
        spacious = json.dumps({"Version": "2012-10-17", "Statement": sids}, indent=8).encode()
        self.assertGreater(len(spacious), MAX_POLICY_BYTES)
        parse(spacious, BUCKET)
        large = document(*(statement(Sid=f"S{i:05d}") for i in range(200)))
        self.refused(large, "Policy exceeds the maximum allowed document size.", "PolicyTooLarge")


class EvaluateTests(SynchronousTestCase):
    def verdict(self, *statements: dict, context: RequestContext, version: Optional[str] = "2012-10-17") -> Any:
        return evaluate(parse(document(*statements, version=version), BUCKET), context)

    def test_principal_matching(self) -> None:
        public = statement()
        self.assertEqual(self.verdict(public, context=request()), "Allow")
        self.assertEqual(self.verdict(public, context=request(account=BOB)), "Allow")
        alice = statement(principal={"AWS": f"arn:aws:iam::{ALICE}:root"})
        self.assertEqual(self.verdict(alice, context=request(account=ALICE)), "Allow")
        self.assertIsNone(self.verdict(alice, context=request(account=BOB)))
        self.assertIsNone(self.verdict(alice, context=request()))

    def test_not_principal(self) -> None:
        everyone_but_alice = {"Effect": "Deny", "NotPrincipal": {"AWS": ALICE}, "Action": "s3:*",
                              "Resource": f"arn:aws:s3:::{BUCKET}/*"}
        self.assertIsNone(self.verdict(everyone_but_alice, context=request(account=ALICE)))
        self.assertEqual(self.verdict(everyone_but_alice, context=request(account=BOB)), "Deny")
        self.assertEqual(self.verdict(everyone_but_alice, context=request()), "Deny")

    def test_action_wildcards_and_case(self) -> None:
        gets = statement(action="s3:Get*")
        self.assertEqual(self.verdict(gets, context=request("s3:GetObject")), "Allow")
        self.assertEqual(self.verdict(gets, context=request("s3:GetObjectTagging")), "Allow")
        self.assertIsNone(self.verdict(gets, context=request("s3:PutObject")))
        self.assertEqual(self.verdict(statement(action="S3:GETOBJECT"), context=request("s3:GetObject")), "Allow")
        not_put = statement(action=None, NotAction="s3:PutObject")
        del not_put["Action"]
        self.assertEqual(self.verdict(not_put, context=request("s3:GetObject")), "Allow")
        self.assertIsNone(self.verdict(not_put, context=request("s3:PutObject")))

    def test_resource_wildcards(self) -> None:
        under = statement(resource=f"arn:aws:s3:::{BUCKET}/public/*")
        self.assertEqual(self.verdict(under, context=request(key="public/a/b")), "Allow")
        self.assertIsNone(self.verdict(under, context=request(key="private/a")))
        self.assertIsNone(self.verdict(under, context=request(key="Public/a")))  # case-sensitive
        one = statement(resource=f"arn:aws:s3:::{BUCKET}/img?.jpg")
        self.assertEqual(self.verdict(one, context=request(key="img1.jpg")), "Allow")
        self.assertIsNone(self.verdict(one, context=request(key="img10.jpg")))
        literal = statement(resource=f"arn:aws:s3:::{BUCKET}/a.b+c(d)")
        self.assertEqual(self.verdict(literal, context=request(key="a.b+c(d)")), "Allow")
        self.assertIsNone(self.verdict(literal, context=request(key="aXb+c(d)")))
        newline = statement(resource=f"arn:aws:s3:::{BUCKET}/*")
        self.assertEqual(self.verdict(newline, context=request(key="a\nb")), "Allow")
        bucket = statement(action="s3:ListBucket", resource=f"arn:aws:s3:::{BUCKET}")
        self.assertEqual(self.verdict(bucket, context=request("s3:ListBucket", key=None)), "Allow")
        self.assertIsNone(self.verdict(statement(action="s3:*"), context=request("s3:ListBucket", key=None)))

    def test_explicit_deny_wins(self) -> None:
        allow = statement(action="s3:*")
        deny = statement("Deny", action="s3:DeleteObject")
        self.assertEqual(self.verdict(allow, deny, context=request("s3:DeleteObject")), "Deny")
        self.assertEqual(self.verdict(deny, allow, context=request("s3:DeleteObject")), "Deny")
        self.assertEqual(self.verdict(allow, deny, context=request("s3:GetObject")), "Allow")

    def test_source_ip(self) -> None:
        office = statement(Condition={"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]},
                                      "NotIpAddress": {"aws:SourceIp": "192.0.2.188/32"}})
        self.assertEqual(self.verdict(office, context=request(aws_SourceIp="192.0.2.7")), "Allow")
        self.assertEqual(self.verdict(office, context=request(aws_SourceIp="2001:db8::1")), "Allow")
        self.assertIsNone(self.verdict(office, context=request(aws_SourceIp="192.0.2.188")))
        self.assertIsNone(self.verdict(office, context=request(aws_SourceIp="198.51.100.1")))
        self.assertIsNone(self.verdict(office, context=request()))
        single = statement(Condition={"IpAddress": {"aws:SourceIp": "127.0.0.1"}})
        self.assertEqual(self.verdict(single, context=request(aws_SourceIp="127.0.0.1")), "Allow")

    def test_secure_transport_deny(self) -> None:
        allow = statement()
        deny = statement("Deny", action="s3:*", Condition={"Bool": {"aws:SecureTransport": "false"}})
        self.assertEqual(self.verdict(allow, deny, context=request(aws_SecureTransport="false")), "Deny")
        self.assertEqual(self.verdict(allow, deny, context=request(aws_SecureTransport="true")), "Allow")
        as_json_bool = statement("Deny", action="s3:*", Condition={"Bool": {"aws:SecureTransport": False}})
        self.assertEqual(self.verdict(as_json_bool, context=request(aws_SecureTransport="false")), "Deny")

    def test_missing_keys(self) -> None:
        def one(operator: str, value: Any = "x") -> Any:
            return self.verdict(statement(Condition={operator: {"aws:Referer": value}}), context=request())

        self.assertIsNone(one("StringEquals"))
        self.assertEqual(one("StringNotEquals"), "Allow")
        self.assertEqual(one("StringEqualsIfExists"), "Allow")
        self.assertEqual(one("StringNotLike"), "Allow")
        self.assertIsNone(one("ForAnyValue:StringEquals"))
        self.assertEqual(one("ForAllValues:StringEquals"), "Allow")
        self.assertEqual(one("Null", "true"), "Allow")
        self.assertIsNone(one("Null", "false"))

    def test_string_operators(self) -> None:
        def one(operator: str, value: Any, referer: str) -> Any:
            return self.verdict(statement(Condition={operator: {"aws:Referer": value}}),
                                context=request(aws_Referer=referer))

        self.assertEqual(one("StringEquals", ["a", "b"], "b"), "Allow")
        self.assertIsNone(one("StringEquals", "B", "b"))
        self.assertEqual(one("StringEqualsIgnoreCase", "B", "b"), "Allow")
        self.assertIsNone(one("StringNotEqualsIgnoreCase", "B", "b"))
        self.assertIsNone(one("StringNotEquals", ["a", "b"], "b"))  # NOR over the values
        self.assertEqual(one("StringNotEquals", ["a", "b"], "c"), "Allow")
        self.assertEqual(one("StringLike", "https://example.com/*", "https://example.com/x"), "Allow")
        self.assertIsNone(one("StringLike", "https://example.com/*", "https://example.org/x"))
        self.assertEqual(one("StringLike", "v?", "v1"), "Allow")
        self.assertIsNone(one("StringEquals", "v*", "v1"))  # no wildcards in Equals
        self.assertEqual(one("StringNotLike", "*.evil/*", "https://good/"), "Allow")
        self.assertEqual(one("Null", "false", "x"), "Allow")

    def test_numeric_and_date_operators(self) -> None:
        def keys(operator: str, value: Any, max_keys: str) -> Any:
            return self.verdict(statement(action="s3:ListBucket", resource=f"arn:aws:s3:::{BUCKET}",
                                          Condition={operator: {"s3:max-keys": value}}),
                                context=request("s3:ListBucket", key=None, **{"s3_max-keys": max_keys}))

        self.assertEqual(keys("NumericLessThanEquals", "100", "100"), "Allow")
        self.assertIsNone(keys("NumericLessThan", "100", "100"))
        self.assertEqual(keys("NumericGreaterThan", 10, "10.5"), "Allow")
        self.assertEqual(keys("NumericEquals", "10", "10.0"), "Allow")
        self.assertEqual(keys("NumericNotEquals", "10", "11"), "Allow")
        self.assertIsNone(keys("NumericGreaterThanEquals", "10", "many"))

        def when(operator: str, value: Any, now: str) -> Any:
            return self.verdict(statement(Condition={operator: {"aws:CurrentTime": value}}),
                                context=request(aws_CurrentTime=now))

        self.assertEqual(when("DateLessThan", "2030-01-01T00:00:00Z", "2026-12-04T10:00:00Z"), "Allow")
        self.assertIsNone(when("DateGreaterThan", "2030-01-01T00:00:00Z", "2026-12-04T10:00:00Z"))
        self.assertEqual(when("DateGreaterThanEquals", "2026-12-04", "2026-12-04T00:00:00Z"), "Allow")
        self.assertEqual(when("DateEquals", "1796385600", "2026-12-04T12:00:00Z"), "Allow")
        self.assertEqual(when("DateNotEquals", "2026-12-04T12:00:00+01:00", "2026-12-04T12:00:00Z"), "Allow")
        epoch = self.verdict(statement(Condition={"DateLessThan": {"aws:EpochTime": "2030-01-01T00:00:00Z"}}),
                             context=request(aws_EpochTime="1796385600"))
        self.assertEqual(epoch, "Allow")

    def test_set_qualifiers(self) -> None:
        def keys_in(qualified: str, values: list[str], request_keys: tuple[str, ...]) -> Any:
            return self.verdict(statement(action="s3:PutObject",
                                          Condition={qualified: {"s3:RequestObjectTagKeys": values}}),
                                context=request("s3:PutObject", s3_RequestObjectTagKeys=request_keys))

        self.assertEqual(keys_in("ForAllValues:StringEquals", ["a", "b"], ("a",)), "Allow")
        self.assertIsNone(keys_in("ForAllValues:StringEquals", ["a", "b"], ("a", "c")))
        self.assertEqual(keys_in("ForAnyValue:StringEquals", ["a", "b"], ("c", "b")), "Allow")
        self.assertIsNone(keys_in("ForAnyValue:StringEquals", ["a", "b"], ("c", "d")))
        self.assertEqual(keys_in("ForAnyValue:StringNotEquals", ["a"], ("a", "z")), "Allow")
        self.assertIsNone(keys_in("ForAllValues:StringNotEquals", ["a"], ("a", "z")))

    def test_s3_keys(self) -> None:
        listing = statement(action="s3:ListBucket", resource=f"arn:aws:s3:::{BUCKET}",
                            Condition={"StringLike": {"s3:prefix": ["home/", "home/*"]},
                                       "StringEquals": {"s3:delimiter": "/"}})
        self.assertEqual(self.verdict(listing, context=request("s3:ListBucket", None, s3_prefix="home/a",
                                                               s3_delimiter="/")), "Allow")
        self.assertIsNone(self.verdict(listing, context=request("s3:ListBucket", None, s3_prefix="etc/",
                                                                s3_delimiter="/")))
        owner_acl = statement(action="s3:PutObject",
                              Condition={"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}})
        self.assertEqual(self.verdict(owner_acl, context=request(
            "s3:PutObject", **{"s3_x-amz-acl": "bucket-owner-full-control"})), "Allow")
        self.assertIsNone(self.verdict(owner_acl, context=request("s3:PutObject")))
        tagged = statement(Condition={"StringEquals": {"s3:ExistingObjectTag/Class": "public"}})
        self.assertEqual(self.verdict(tagged, context=request(**{"s3_ExistingObjectTag/Class": "public"})), "Allow")
        self.assertIsNone(self.verdict(tagged, context=request(**{"s3_ExistingObjectTag/class": "public"})))
        v4 = statement("Deny", Condition={"StringNotEquals": {"s3:signatureversion": "AWS4-HMAC-SHA256"}})
        self.assertEqual(self.verdict(v4, context=request(s3_signatureversion="AWS")), "Deny")
        self.assertIsNone(self.verdict(v4, context=request(s3_signatureversion="AWS4-HMAC-SHA256")))
        account = statement(Condition={"StringEquals": {"aws:PrincipalAccount": ALICE}})
        self.assertEqual(self.verdict(account, context=request(account=ALICE, aws_PrincipalAccount=ALICE)), "Allow")

    def test_policy_variables(self) -> None:
        home = statement(resource=f"arn:aws:s3:::{BUCKET}/home/${{aws:PrincipalAccount}}/*")
        context = request(key=f"home/{ALICE}/x", account=ALICE, aws_PrincipalAccount=ALICE)
        self.assertEqual(self.verdict(home, context=context), "Allow")
        self.assertIsNone(self.verdict(home, context=request(key=f"home/{ALICE}/x", account=BOB,
                                                            aws_PrincipalAccount=BOB)))
        # No value: matches nothing; a default stands in.
        self.assertIsNone(self.verdict(home, context=request(key=f"home/{ALICE}/x")))
        default = statement(resource=f"arn:aws:s3:::{BUCKET}/home/${{aws:PrincipalAccount, 'anon'}}/*")
        self.assertEqual(self.verdict(default, context=request(key="home/anon/x")), "Allow")
        # ${*} is a literal star; a 2008-10-17 policy takes ${...} literally.
        star = statement(resource=f"arn:aws:s3:::{BUCKET}/stars/${{*}}")
        self.assertEqual(self.verdict(star, context=request(key="stars/*")), "Allow")
        self.assertIsNone(self.verdict(star, context=request(key="stars/x")))
        self.assertIsNone(self.verdict(home, context=context, version="2008-10-17"))
        self.assertEqual(self.verdict(home, context=request(key="home/${aws:PrincipalAccount}/x"),
                                      version="2008-10-17"), "Allow")


class PublicTests(SynchronousTestCase):
    def public(self, *statements: dict) -> bool:
        return is_public(parse(document(*statements), BUCKET))

    def test_what_is_public(self) -> None:
        self.assertTrue(self.public(statement()))
        self.assertTrue(self.public(statement(principal={"AWS": ["*", ALICE]})))
        self.assertFalse(self.public(statement(principal={"AWS": ALICE})))
        self.assertFalse(self.public(statement("Deny")))
        self.assertTrue(self.public(statement(Condition={"StringLike": {"aws:Referer": "https://example.com/*"}})))
        self.assertTrue(self.public(statement(Condition={"Bool": {"aws:SecureTransport": "true"}})))

    def test_fixed_conditions_are_not_public(self) -> None:
        self.assertFalse(self.public(statement(Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}})))
        self.assertFalse(self.public(statement(Condition={"StringEquals": {"aws:PrincipalAccount": ALICE}})))
        self.assertFalse(self.public(statement(Condition={"StringEquals": {"aws:SourceVpce": "vpce-1"}})))

    def test_open_conditions_stay_public(self) -> None:
        self.assertTrue(self.public(statement(Condition={"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}})))
        self.assertTrue(self.public(statement(Condition={"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "0.0.0.0/1"]}})))
        self.assertTrue(self.public(statement(Condition={"IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}})))
        self.assertTrue(self.public(statement(Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}})))
        self.assertTrue(self.public(statement(Condition={"StringLike": {"aws:PrincipalAccount": "1*"}})))
        self.assertTrue(self.public(statement(Condition={"StringNotEquals": {"aws:PrincipalAccount": ALICE}})))
        self.assertTrue(self.public(statement(principal={"AWS": ALICE}), statement()))


class DecideTests(SynchronousTestCase):
    def facts(self, *statements: dict, block: PublicAccessBlock = PublicAccessBlock()) -> BucketPolicyFacts:
        return BucketPolicyFacts(ALICE, parse(document(*statements), BUCKET), block)

    def test_no_policy_says_nothing(self) -> None:
        self.assertIsNone(decide_policy(BucketPolicyFacts(ALICE, None), request()))

    def test_restrict_public_buckets(self) -> None:
        public = (statement(), statement(principal={"AWS": BOB}, action="s3:PutObject"))
        restricted = self.facts(*public, block=PublicAccessBlock(restrict_public_buckets=True))
        self.assertIsNone(decide_policy(restricted, request()))
        self.assertIsNone(decide_policy(restricted, request(account=BOB)))
        # Cross-account grants of a public policy are cut too; the owner's and admins' stay.
        self.assertIsNone(decide_policy(restricted, request("s3:PutObject", account=BOB)))
        self.assertEqual(decide_policy(restricted, request(account=ALICE)), "Allow")
        self.assertEqual(decide_policy(restricted, RequestContext("s3:GetObject", resource_arn(BUCKET, "k"),
                                                                  None, admin=True)), "Allow")
        # A policy that is not public is not restricted.
        private = self.facts(statement(principal={"AWS": BOB}), block=ALL_BLOCKED)
        self.assertEqual(decide_policy(private, request(account=BOB)), "Allow")
        self.assertEqual(decide_policy(self.facts(*public), request()), "Allow")

    def test_restrict_leaves_deny(self) -> None:
        facts = self.facts(statement(), statement("Deny", Condition={"Bool": {"aws:SecureTransport": "false"}}),
                           block=ALL_BLOCKED)
        self.assertEqual(decide_policy(facts, request(account=ALICE, aws_SecureTransport="false")), "Deny")

    def test_owner_always_manages_the_policy(self) -> None:
        lockout = self.facts(statement("Deny", action="s3:*", resource=[f"arn:aws:s3:::{BUCKET}",
                                                                        f"arn:aws:s3:::{BUCKET}/*"]))
        for action in ("s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"):
            self.assertIsNone(decide_policy(lockout, request(action, key=None, account=ALICE)))
            self.assertEqual(decide_policy(lockout, request(action, key=None, account=BOB)), "Deny")
        self.assertEqual(decide_policy(lockout, request("s3:ListBucket", key=None, account=ALICE)), "Deny")

    def test_flags_for_the_acl_side(self) -> None:
        facts = BucketPolicyFacts(ALICE, None, PublicAccessBlock(block_public_acls=True, ignore_public_acls=True))
        self.assertEqual((facts.block_public_acls, facts.ignore_public_acls), (True, True))

    def test_public_access_block_text_and_union(self) -> None:
        block = PublicAccessBlock(block_public_acls=True, restrict_public_buckets=True)
        self.assertEqual(PublicAccessBlock.load(block.dump()), block)
        self.assertEqual(json.loads(block.dump()), {"BlockPublicAcls": True, "IgnorePublicAcls": False,
                                                    "BlockPublicPolicy": False, "RestrictPublicBuckets": True})
        self.assertEqual(block.union(PublicAccessBlock(ignore_public_acls=True)).flags(), (True, True, False, True))
        self.assertEqual(block.union(ALL_BLOCKED), ALL_BLOCKED)


class OperationTableTests(SynchronousTestCase):
    def test_every_routed_operation_has_an_action(self) -> None:
        from s3balance.s3.routing import ROUTES

        for operation in set(ROUTES.values()) | {"ListObjectsV2", "CopyObject", "UploadPartCopy"}:
            action = action_of(operation)
            self.assertIsNotNone(action, operation)
            assert action is not None
            self.assertIn(action[3:], ALL_ACTIONS, operation)

    def test_the_mapping_s3_documents(self) -> None:
        self.assertEqual(action_of("ListObjectsV2"), "s3:ListBucket")
        self.assertEqual(action_of("HeadObject"), "s3:GetObject")
        self.assertEqual(action_of("DeleteObjects"), "s3:DeleteObject")
        self.assertEqual(action_of("CompleteMultipartUpload"), "s3:PutObject")
        self.assertEqual(action_of("GetObjectTagging"), "s3:GetObjectTagging")
        self.assertIsNone(action_of("PreflightCORS"))


# -- fuzzing ----------------------------------------------------------------------------------

ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:Get*", "s3:*", "*",
           "s3:GetObjectTagging", "s3:AbortMultipartUpload"]
RESOURCES = [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*", f"arn:aws:s3:::{BUCKET}/a*",
             f"arn:aws:s3:::{BUCKET}/b/?", f"arn:aws:s3:::{BUCKET}/${{aws:PrincipalAccount}}/*"]
PRINCIPALS: list[Any] = ["*", {"AWS": "*"}, {"AWS": ALICE}, {"AWS": [ALICE, BOB]}, {"AWS": f"arn:aws:iam::{BOB}:root"}]
CONDITIONS: list[Any] = [
    {},
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"NotIpAddress": {"aws:SourceIp": ["10.1.0.0/16", "::1"]}},
    {"Bool": {"aws:SecureTransport": "false"}},
    {"StringLike": {"aws:Referer": ["https://a/*", "*b*"]}},
    {"StringNotEqualsIfExists": {"aws:UserAgent": "curl"}},
    {"Null": {"aws:Referer": "true"}},
    {"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["a", "b"]}},
    {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
    {"NumericLessThanIfExists": {"aws:EpochTime": 2000000000}},
    {"StringEquals": {"s3:ExistingObjectTag/k": "v"}},
]


def random_statement(rng: random.Random, effect: Optional[str] = None) -> dict:
    raw: dict[str, Any] = {"Effect": effect or rng.choice(["Allow", "Deny"])}
    raw["NotPrincipal" if rng.random() < 0.15 else "Principal"] = rng.choice(PRINCIPALS)
    raw["NotAction" if rng.random() < 0.15 else "Action"] = rng.sample(ACTIONS, rng.randint(1, 3))
    raw["NotResource" if rng.random() < 0.1 else "Resource"] = rng.sample(RESOURCES, rng.randint(1, 3))
    condition = rng.choice(CONDITIONS)
    if condition:
        raw["Condition"] = condition
    return raw


def valid_statement(rng: random.Random, effect: Optional[str] = None) -> dict:
    """A random statement S3 accepts (an action on no resource of its kind is refused)."""
    while True:
        raw = random_statement(rng, effect)
        try:
            parse(document(raw), BUCKET)
        except S3Error:
            continue
        return raw


def random_context(rng: random.Random) -> RequestContext:
    key = rng.choice([None, "a", "ab", "b/c", f"{ALICE}/x", "z"])
    action = rng.choice(["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetObjectTagging",
                         "s3:PutBucketPolicy"])
    account = rng.choice([None, ALICE, BOB, "333333333333"])
    values: dict[str, Any] = {}
    for name, choices in [
        ("aws:SourceIp", ["10.1.2.3", "192.0.2.1", "::1"]),
        ("aws:SecureTransport", ["true", "false"]),
        ("aws:Referer", ["https://a/x", "abc", "zzz"]),
        ("aws:UserAgent", ["curl", "boto3"]),
        ("aws:CurrentTime", ["2026-12-04T00:00:00Z", "2031-01-01T00:00:00Z"]),
        ("aws:EpochTime", ["1796385600", "2100000000"]),
        ("s3:RequestObjectTagKeys", [("a",), ("a", "c"), ()]),
        ("s3:ExistingObjectTag/k", ["v", "w"]),
    ]:
        if rng.random() < 0.7:
            values[name] = rng.choice(choices)
    if account is not None:
        values["aws:PrincipalAccount"] = account
    return RequestContext(action, resource_arn(BUCKET, key), account, values=context_values(values))


def mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """A random change somewhere in a JSON value."""
    roll = rng.random()
    if isinstance(value, dict) and value and roll < 0.8:
        key = rng.choice(list(value))
        changed = dict(value)
        if rng.random() < 0.15:
            del changed[key]
        elif rng.random() < 0.1:
            changed[key + rng.choice(["x", "", " "])] = value[key]
        else:
            changed[key] = mutate(rng, value[key], depth + 1)
        return changed
    if isinstance(value, list) and value and roll < 0.8:
        changed_list = list(value)
        index = rng.randrange(len(value))
        changed_list[index] = mutate(rng, value[index], depth + 1)
        return changed_list
    return rng.choice([None, True, 0, -1, 1.5, "", "*", "?", "${", "${*}", "arn:aws:s3:::", "s3:", [], {}, [[]],
                       {"AWS": None}, "x" * 300, "\u00e9\U0001f600", "2012-10-17", "10.0.0.0/33", "NaN",
                       value if depth else {}])


class FuzzTests(SynchronousTestCase):
    def test_mutated_documents_raise_only_the_s3_error(self) -> None:
        rng = random.Random(20)
        accepted = 0
        for _ in range(3000):
            base = {"Version": "2012-10-17", "Statement": [valid_statement(rng) for _ in range(rng.randint(1, 3))]}
            for _ in range(rng.randint(0, 3)):
                base = mutate(rng, base)
            body = json.dumps(base).encode()
            if rng.random() < 0.1:
                cut = rng.randrange(len(body) + 1)
                body = body[:cut] + bytes([rng.randrange(256)]) + body[cut + 1:]
            try:
                read = parse(body, BUCKET)
            except S3Error as error:
                self.assertIn(error.code, ("MalformedPolicy", "PolicyTooLarge"))
                self.assertEqual(error.status, 400)
                continue
            accepted += 1
            for _ in range(3):
                self.assertIn(evaluate(read, random_context(rng)), (None, "Allow", "Deny"))
                is_public(read)
        self.assertGreater(accepted, 500)

    def test_deny_only_policies_never_allow(self) -> None:
        rng = random.Random(4)
        for _ in range(500):
            read = parse(document(*(valid_statement(rng, "Deny") for _ in range(rng.randint(1, 4)))), BUCKET)
            for _ in range(10):
                context = random_context(rng)
                self.assertNotEqual(evaluate(read, context), "Allow")
                facts = BucketPolicyFacts(ALICE, read, rng.choice([PublicAccessBlock(), ALL_BLOCKED]))
                self.assertNotEqual(decide_policy(facts, context), "Allow")

    def test_adding_a_deny_never_widens(self) -> None:
        rng = random.Random(7)
        for _ in range(500):
            statements = [valid_statement(rng) for _ in range(rng.randint(1, 4))]
            deny = valid_statement(rng, "Deny")
            before = parse(document(*statements), BUCKET)
            after = parse(document(*statements[: len(statements) // 2], deny, *statements[len(statements) // 2:]),
                          BUCKET)
            block = rng.choice([PublicAccessBlock(), ALL_BLOCKED])
            for _ in range(10):
                context = random_context(rng)
                if evaluate(after, context) == "Allow":
                    self.assertEqual(evaluate(before, context), "Allow")
                if decide_policy(BucketPolicyFacts(ALICE, after, block), context) == "Allow":
                    self.assertEqual(decide_policy(BucketPolicyFacts(ALICE, before, block), context), "Allow")
