"""The configured virtual buckets and their quotas, written to the metadata store (at start and on reload)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from s3balance.store.interfaces import Quota

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

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
    """A row for each configured virtual bucket, with its configured quota (see IMetadataStore.sync_config_buckets)."""
    return store.sync_config_buckets([bucket.name for bucket in config.virtual_buckets], config_quotas(config))
