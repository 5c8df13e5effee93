"""
The admin API's view of accounts (C{GET /admin/accounts}): each account
with its credentials' key ids (never a secret) and how many buckets it
owns, built from the configuration and the store's bucket rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

from s3balance.s3.access import bucket_owner

if TYPE_CHECKING:
    from s3balance.config.schema import Config
    from s3balance.store.interfaces import BucketRecord


def owners_of(config: Config, records: Iterable[BucketRecord]) -> dict[str, str]:
    """Every bucket's owning account id, by name: configured buckets and the store's rows."""
    owners = {bucket.name: bucket_owner(config, bucket.name, None) for bucket in config.virtual_buckets}
    for record in records:
        owners[record.name] = bucket_owner(config, record.name, record.owner)
    return owners


def accounts_report(config: Config, owners: dict[str, str]) -> list[dict[str, Any]]:
    """
    One dict per configured account, in configuration order, then one per
    account id that owns buckets but is no longer configured (C{configured}
    false: only an admin credential reaches those buckets until they are
    handed to another account).
    """
    s3api = config.s3api
    counts = Counter(owners.values())
    report: list[dict[str, Any]] = []
    for account in s3api.accounts:
        report.append(
            {
                "id": account.id,
                "display_name": account.display_name,
                "configured": True,
                "default_account": account.id == s3api.default_account,
                "default_owner": account.id == s3api.default_owner,
                "credentials": [
                    {
                        "access_key": credential.access_key,
                        "admin": credential.admin,
                        "read_only": credential.read_only,
                        "buckets": list(credential.buckets) if credential.buckets is not None else None,
                    }
                    for credential in s3api.credentials
                    if credential.account == account.id
                ],
                "buckets": counts.get(account.id, 0),
            }
        )
    known = {account.id for account in s3api.accounts}
    for orphan in sorted(set(counts) - known):
        report.append(
            {
                "id": orphan,
                "display_name": None,
                "configured": False,
                "default_account": False,
                "default_owner": False,
                "credentials": [],
                "buckets": counts[orphan],
            }
        )
    return report


def account_report(config: Config, owners: dict[str, str], account_id: str) -> Optional[dict[str, Any]]:
    for report in accounts_report(config, owners):
        if report["id"] == account_id:
            return report
    return None
