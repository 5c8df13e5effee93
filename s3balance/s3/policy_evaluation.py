"""
What a bucket policy says of one request, and the verdict the access
decision takes from it.  Pure functions and frozen values, no I/O:

  - L{evaluate}: what a policy says of one request (L{RequestContext}):
    C{"Deny"} when a matching statement denies it (explicit Deny wins),
    C{"Allow"} when one allows it and none denies it, None when no
    statement speaks of it;
  - L{decide_policy}: the one call the access decision makes: the
    policy's verdict once Block Public Access (RestrictPublicBuckets) and
    the owner's standing right to manage the policy are applied.

Evaluation follows the IAM rules: values of one condition key are ORed
(for a negated operator, such as C{StringNotEquals}, NORed), keys and
operators ANDed; a key the request lacks makes a condition false, a
negated operator's true, an C{...IfExists} operator's true;
C{ForAnyValue:} / C{ForAllValues:} qualify multi-valued keys.  One value
against one policy value is L{s3balance.s3.policy_conditions.compare}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional, Union

from attrs import field, frozen

from s3balance.s3.policy_actions import OWNER_ALWAYS
from s3balance.s3.policy_conditions import NEGATED, POSITIVE, compare, condition_key, matches
from s3balance.s3.policy_document import Condition, Policy, Statement, Verdict
from s3balance.s3.public_access_block import NO_BLOCK, PublicAccessBlock


@frozen
class RequestContext:
    """
    What a policy is evaluated against: the IAM C{action}
    (C{"s3:GetObject"}, L{s3balance.s3.policy_actions.action_of}), the
    C{resource} ARN (L{s3balance.s3.policy_actions.resource_arn}),
    the caller's C{account} (None: anonymous), whether the caller is a
    configuration-level C{admin}, and the request's condition C{values}, by
    L{condition_key} (see L{context_values}).  A key the request does not
    carry is left out.
    """

    action: str
    resource: str
    account: Optional[str] = None
    admin: bool = False
    values: Mapping[str, tuple[str, ...]] = field(factory=dict, eq=False)


def context_values(values: Mapping[str, Union[str, Sequence[str], None]]) -> dict[str, tuple[str, ...]]:
    """C{values} as L{RequestContext.values} wants them: names normalized, each a tuple, None left out."""
    found: dict[str, tuple[str, ...]] = {}
    for name, value in values.items():
        if value is None:
            continue
        found[condition_key(name)] = (value,) if isinstance(value, str) else tuple(value)
    return found


def _holds(condition: Condition, context: RequestContext, variables: bool) -> bool:
    """Whether one condition (one operator, one key) holds for the request."""
    present = context.values.get(condition.key)
    values = context.values if variables else None
    if condition.operator == "Null":
        absent = not present
        return all((v.lower() == "true") == absent for v in condition.values)
    if not present:
        if condition.if_exists:
            return True
        if condition.qualifier == "ForAllValues":
            return True
        if condition.qualifier == "ForAnyValue":
            return False
        return condition.operator in NEGATED
    negated = condition.operator in NEGATED
    positive = POSITIVE.get(condition.operator, condition.operator)

    def satisfied(request: str) -> bool:
        hit = any(compare(positive, request, policy, values) for policy in condition.values)
        return not hit if negated else hit

    if condition.qualifier == "ForAllValues":
        return all(satisfied(r) for r in present)
    if condition.qualifier == "ForAnyValue":
        return any(satisfied(r) for r in present)
    # A single-valued key (several values only from a multi-valued one used
    # without a qualifier): any value matching is a match.
    if negated:
        return not any(not satisfied(r) for r in present)
    return any(satisfied(r) for r in present)


def _statement_applies(statement: Statement, context: RequestContext, variables: bool) -> bool:
    in_principals = statement.principals.includes(context.account)
    if in_principals == statement.not_principal:
        return False
    action = context.action.lower()
    named = any(matches(pattern, action, wildcards=True, ignore_case=True) for pattern in statement.actions)
    if named == statement.not_action:
        return False
    values = context.values if variables else None
    covered = any(matches(pattern, context.resource, wildcards=True, values=values)
                  for pattern in statement.resources)
    if covered == statement.not_resource:
        return False
    return all(_holds(condition, context, variables) for condition in statement.conditions)


def evaluate(policy: Policy, context: RequestContext) -> Optional[Verdict]:
    """
    What C{policy} says of the request: C{"Deny"} when a statement that
    applies denies it (explicit Deny wins over every Allow), C{"Allow"} when
    one allows it and none denies it, None when none applies.
    """
    allowed = False
    for statement in policy.statements:
        if _statement_applies(statement, context, policy.uses_variables):
            if statement.effect == "Deny":
                return "Deny"
            allowed = True
    return "Allow" if allowed else None


# -- the access decision's verdict ---------------------------------------------------------------


@frozen
class BucketPolicyFacts:
    """
    What access decisions know of a bucket's policy side: its owning
    account, its policy (None: none) and the Block Public Access flags that
    apply to it (the bucket's with the gateway's).
    """

    owner: str
    policy: Optional[Policy]
    block: PublicAccessBlock = NO_BLOCK

    @property
    def ignore_public_acls(self) -> bool:
        """Whether public ACL grants (AllUsers, AuthenticatedUsers) grant nothing on this bucket."""
        return self.block.ignore_public_acls

    @property
    def block_public_acls(self) -> bool:
        """Whether a request setting a public ACL on this bucket or its objects is refused."""
        return self.block.block_public_acls


def decide_policy(facts: BucketPolicyFacts, context: RequestContext) -> Optional[Verdict]:
    """
    The bucket policy's verdict on a request, as the access decision takes
    it: C{"Deny"} (refuse, whatever else grants), C{"Allow"} (grant, as an
    ACL grant would), None (the policy says nothing: ownership and ACLs decide).

    Two rules beyond L{evaluate}: the owning account (and an admin) may
    always read, set and delete the policy (S3 never locks an owner out of
    it); and with RestrictPublicBuckets, a public policy grants nothing to
    a caller outside the owning account (its Deny still denies).
    """
    policy = facts.policy
    if policy is None:
        return None
    own = context.admin or (context.account is not None and context.account == facts.owner)
    if own and context.action in OWNER_ALWAYS:
        return None
    verdict = evaluate(policy, context)
    if verdict == "Allow" and facts.block.restrict_public_buckets and policy.public and not own:
        return None
    return verdict
