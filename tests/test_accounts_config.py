"""
Accounts in the configuration (s3balance.config.accounts): the implicit
default account that keeps configs without accounts unchanged, credentials'
accounts and admin flag, the default owner and configured buckets' owners;
every error names its key.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from s3balance.config import Account, ConfigError, parse_config
from s3balance.config.schema import IMPLICIT_ACCOUNT_ID
from tests.test_config import minimal

ALICE, BOB = "111111111111", "222222222222"


def with_accounts(**s3api: Any) -> dict[str, Any]:
    mapping = minimal()
    mapping["s3api"].update(s3api)
    return mapping


def two_accounts(**s3api: Any) -> dict[str, Any]:
    return with_accounts(
        accounts=[{"id": ALICE, "display_name": "alice"}, {"id": BOB, "display_name": "bob"}],
        credentials=[
            {"access_key": "alice-key", "secret_key": "s1", "account": ALICE},
            {"access_key": "bob-key", "secret_key": "s2", "account": BOB, "admin": True},
        ],
        **s3api,
    )


class AccountConfigTests(SynchronousTestCase):
    def assertConfigError(self, mapping: Any, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(mapping)
        self.assertEqual(str(caught.exception), message)

    def test_a_config_without_accounts_has_the_implicit_one_for_everything(self) -> None:
        s3api = parse_config(minimal()).s3api
        self.assertEqual(s3api.accounts, (Account(IMPLICIT_ACCOUNT_ID, "s3balance"),))
        self.assertEqual((s3api.default_account, s3api.default_owner), (IMPLICIT_ACCOUNT_ID, IMPLICIT_ACCOUNT_ID))
        self.assertEqual([(c.account, c.admin) for c in s3api.credentials], [(IMPLICIT_ACCOUNT_ID, False)])

    def test_credentials_name_their_account_and_admin(self) -> None:
        s3api = parse_config(two_accounts()).s3api
        self.assertEqual(
            s3api.accounts,
            (Account(IMPLICIT_ACCOUNT_ID, "s3balance"), Account(ALICE, "alice"), Account(BOB, "bob")),
        )
        self.assertEqual(
            [(c.access_key, c.account, c.admin) for c in s3api.credentials],
            [("client", IMPLICIT_ACCOUNT_ID, False), ("alice-key", ALICE, False), ("bob-key", BOB, True)],
        )
        self.assertEqual(s3api.account(BOB), Account(BOB, "bob"))
        self.assertIsNone(s3api.account("333333333333"))

    def test_default_account_and_owner(self) -> None:
        s3api = parse_config(two_accounts(default_account=ALICE, default_owner=BOB)).s3api
        self.assertEqual([a.id for a in s3api.accounts], [ALICE, BOB])
        self.assertEqual((s3api.default_account, s3api.default_owner), (ALICE, BOB))
        # The Go pair and credentials without an account belong to the default account.
        self.assertEqual(s3api.credentials[0].account, ALICE)

    def test_default_owner_defaults_to_the_default_account(self) -> None:
        self.assertEqual(parse_config(two_accounts(default_account=BOB)).s3api.default_owner, BOB)

    def test_display_name_defaults_to_the_id(self) -> None:
        s3api = parse_config(with_accounts(accounts=[{"id": ALICE}])).s3api
        self.assertEqual(s3api.account(ALICE), Account(ALICE, ALICE))

    def test_an_unquoted_id_of_12_digits_is_taken(self) -> None:
        s3api = parse_config(with_accounts(accounts=[{"id": int(ALICE)}])).s3api
        self.assertEqual(s3api.account(ALICE), Account(ALICE, ALICE))

    def test_a_configured_bucket_names_its_owner(self) -> None:
        mapping = two_accounts()
        mapping["buckets"][1]["owner"] = BOB
        self.assertEqual(parse_config(mapping).virtual_buckets[0].owner, BOB)
        self.assertIsNone(parse_config(two_accounts()).virtual_buckets[0].owner)

    def test_errors_name_the_key(self) -> None:
        self.assertConfigError(
            with_accounts(accounts=[{"id": "12345"}]),
            "s3api.accounts[0].id: expected an account id of 12 digits, got '12345'",
        )
        self.assertConfigError(
            with_accounts(accounts=[{"id": 1}]),
            "s3api.accounts[0].id: expected an account id of 12 digits, got 1 (quote it: YAML reads an unquoted number)",
        )
        self.assertConfigError(with_accounts(accounts=[{"display_name": "x"}]), "s3api.accounts[0].id: required")
        self.assertConfigError(
            with_accounts(accounts=[{"id": ALICE}, {"id": ALICE}]),
            f"s3api.accounts[1].id: account '{ALICE}' is given twice",
        )
        self.assertConfigError(
            with_accounts(accounts=[{"id": ALICE, "name": "x"}]), "s3api.accounts[0].name: unknown key"
        )
        self.assertConfigError(
            with_accounts(accounts=[{"id": ALICE, "display_name": ""}]),
            "s3api.accounts[0].display_name: expected a name of 1 to 64 printable characters, got ''",
        )
        self.assertConfigError(with_accounts(accounts={"id": ALICE}), "s3api.accounts: expected a list, got a mapping")
        self.assertConfigError(
            two_accounts(default_account="333333333333"),
            "s3api.default_account: '333333333333' is not an account of s3api.accounts",
        )
        self.assertConfigError(
            two_accounts(default_account=ALICE, default_owner=IMPLICIT_ACCOUNT_ID),
            f"s3api.default_owner: '{IMPLICIT_ACCOUNT_ID}' is not an account of s3api.accounts",
        )
        mapping = two_accounts()
        mapping["s3api"]["credentials"][1]["account"] = "333333333333"
        self.assertConfigError(
            mapping, "s3api.credentials[1].account: '333333333333' is not an account of s3api.accounts"
        )
        mapping = two_accounts()
        mapping["s3api"]["credentials"][0]["admin"] = "yes"
        self.assertConfigError(mapping, "s3api.credentials[0].admin: expected true or false, got 'yes'")
        mapping = two_accounts()
        mapping["buckets"][1]["owner"] = "333333333333"
        self.assertConfigError(mapping, "buckets[1].owner: '333333333333' is not an account of s3api.accounts")
