"""The configured virtual buckets, their quotas, owners and versioning, written to the metadata store (at start and on reload)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, ensureDeferred

from s3balance.config.error import ConfigError
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
    Its C{versioning} is written to the row too, where the store's writes read
    it; a bucket the store holds as versioned cannot be configured without
    (ConfigError naming the key: S3 buckets never return to unversioned).
    """
    return ensureDeferred(_sync(store, config))


async def _sync(store: IMetadataStore, config: Config) -> None:
    await store.sync_config_buckets([bucket.name for bucket in config.virtual_buckets], config_quotas(config))
    recorded = {record.name: record for record in await store.list_buckets()}
    for bucket in config.virtual_buckets:
        row = recorded.get(bucket.name)
        if row is None:
            continue
        if bucket.owner is not None and row.owner != bucket.owner:
            await store.set_bucket_owner(bucket.name, bucket.owner)
        # The store's writes read the status from the row (store/versions.py).
        if bucket.versioning is not None and row.versioning != bucket.versioning:
            await store.set_bucket_versioning(bucket.name, bucket.versioning)
        elif bucket.versioning is None and row.versioning is not None:
            raise ConfigError(
                f"{bucket.key}.versioning: bucket {bucket.name} is versioned ({row.versioning}) and a bucket "
                "never returns to unversioned: set Enabled or Suspended"
            )
