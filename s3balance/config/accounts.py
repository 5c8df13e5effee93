"""
``s3api.accounts``, ``s3api.default_account``, ``s3api.default_owner`` and
the account a credential or a configured bucket names: parsed and checked
against each other (every error names its key).
"""

from __future__ import annotations

import re

from s3balance.config.error import ConfigError
from s3balance.config.fields import _describe, _Section, _str
from s3balance.config.schema import IMPLICIT_ACCOUNT_ID, IMPLICIT_ACCOUNT_NAME, Account

_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")


def account_id(value: object) -> str:
    """A 12-digit account id; YAML reads an unquoted one as a number, which loses leading zeros."""
    text = _str(value)
    if not _ACCOUNT_ID.match(text):
        hint = " (quote it: YAML reads an unquoted number)" if not isinstance(value, str) else ""
        raise ValueError(f"expected an account id of 12 digits, got {_describe(value)}{hint}")
    return text


def _display_name(value: object) -> str:
    text = _str(value).strip()
    if not text or len(text) > 64 or any(not c.isprintable() for c in text):
        raise ValueError(f"expected a name of 1 to 64 printable characters, got {_describe(value)}")
    return text


def parse_accounts(section: _Section) -> tuple[tuple[Account, ...], str, str]:
    """
    The accounts of C{section} (``s3api``), the default account and the
    default owner.  Without ``default_account`` the implicit account
    (000000000000, "s3balance") is the default one and is added to the
    accounts unless configured itself.
    """
    value = section.raw("accounts")
    path = section.key_path("accounts")
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
    accounts: list[Account] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        entry = _Section(item, f"{path}[{index}]")
        ident = entry.get("id", account_id, "")
        if not ident:
            raise ConfigError(f"{entry.key_path('id')}: required")
        if ident in seen:
            raise ConfigError(f"{entry.key_path('id')}: account {ident!r} is given twice")
        seen.add(ident)
        accounts.append(Account(ident, entry.get("display_name", _display_name, ident)))
        entry.check_unknown()
    default_account = section.get("default_account", account_id, "")
    if default_account:
        if default_account not in seen:
            raise ConfigError(
                f"{section.key_path('default_account')}: {default_account!r} is not an account of {path}"
            )
    else:
        default_account = IMPLICIT_ACCOUNT_ID
        if IMPLICIT_ACCOUNT_ID not in seen:
            accounts.insert(0, Account(IMPLICIT_ACCOUNT_ID, IMPLICIT_ACCOUNT_NAME))
            seen.add(IMPLICIT_ACCOUNT_ID)
    default_owner = section.get("default_owner", account_id, default_account)
    if default_owner not in seen:
        raise ConfigError(f"{section.key_path('default_owner')}: {default_owner!r} is not an account of {path}")
    return tuple(accounts), default_account, default_owner


def check_account(ident: str | None, key: str, known: set[str], accounts_path: str) -> None:
    """A credential's or a bucket's ``account``/``owner`` must name a configured account."""
    if ident is not None and ident not in known:
        raise ConfigError(f"{key}: {ident!r} is not an account of {accounts_path}")
