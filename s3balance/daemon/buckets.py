"""The configured virtual buckets, their quotas and owners, written to the metadata store (at start and on reload)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, ensureDeferred

from s3balance.store.interfaces import Quota

if TYPE_CHECKING:
    from s3balance.config import Config
    from s3balance.store.interfaces import IMetadataStore


def config_quotas(config: Config) -> dict[str, Quota]:
    """The quotas the configuration sets, by bucket name."""
    return {
        bucket.name: Quota(bucket.quota.max_size, bucket.quota.max_objects)
        for bucket in config.virtual_buckets
        if bucket.quota is not None
    }


def sync_config_buckets(store: IMetadataStore, config: Config) -> Deferred[None]:
    """
    A row for each configured virtual bucket, with its configured quota (see
    IMetadataStore.sync_config_buckets), and the owner a bucket's C{owner}
    names recorded in its row: while configured the configuration decides
    (s3balance.s3.access.bucket_owner), and a bucket later dropped from the
    configuration stays that account's instead of passing to the default owner.
    """
    return ensureDeferred(_sync(store, config))


async def _sync(store: IMetadataStore, config: Config) -> None:
    await store.sync_config_buckets([bucket.name for bucket in config.virtual_buckets], config_quotas(config))
    owners = {bucket.name: bucket.owner for bucket in config.virtual_buckets if bucket.owner is not None}
    if not owners:
        return
    recorded = {record.name: record.owner for record in await store.list_buckets()}
    for name, owner in sorted(owners.items()):
        if recorded.get(name) != owner:
            await store.set_bucket_owner(name, owner)
