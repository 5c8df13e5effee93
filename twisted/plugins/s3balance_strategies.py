"""The built-in placement strategies, as Twisted plugins.

Kept cheap: listing plugins imports this module, the strategies themselves
are imported only when one is made.
"""

from s3balance.placement.plugin import LazyStrategyFactory

roundRobin = LazyStrategyFactory(
    name="round-robin",
    description="Each backend in turn, in name order.",
    qualified_name="s3balance.placement.round_robin.RoundRobin",
)
leastSpace = LazyStrategyFactory(
    name="least-space",
    description="The backend with the most free bytes (max_size - used - reserved).",
    qualified_name="s3balance.placement.least_space.LeastSpace",
)
weighted = LazyStrategyFactory(
    name="weighted",
    description="Smooth weighted round-robin by backend weight (as nginx).",
    qualified_name="s3balance.placement.weighted.SmoothWeightedRoundRobin",
)
consistentHash = LazyStrategyFactory(
    name="consistent-hash",
    description="Hash ring with virtual nodes on bucket/key; keeps keys put when backends change.",
    qualified_name="s3balance.placement.consistent_hash.HashRing",
)
