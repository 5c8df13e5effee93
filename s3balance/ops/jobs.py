"""
L{GatewayJob}: the cluster-wide jobs that work through the daemon's gateway
(its config, store, pool, strategy and reactor, read at each step, so a
reload applies): the drain, the rebalance, the replica repair, the scrub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from s3balance.ops.background import LEASE_SECONDS, BackgroundMetrics, ElectedRepeater, holder_id
from s3balance.ops.cleanup import OUTAGES

if TYPE_CHECKING:
    from s3balance.s3.handler_types import GatewayLike


class GatewayJob(ElectedRepeater):
    """
    An L{ElectedRepeater} named C{name} over C{gateway}: the gateway's store
    and reactor (unless C{clock}), backend and database outages logged as
    warnings and retried at the next run, at most 10 s to stop.
    """

    def __init__(
        self,
        name: str,
        gateway: GatewayLike,
        period: float,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        holder: Optional[str] = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        super().__init__(
            name,
            period,
            clock=clock if clock is not None else gateway.reactor,
            metrics=metrics,
            quiet_errors=OUTAGES,
            stop_timeout=10.0,
            store=gateway.store,
            holder=holder or holder_id(),
            lease_seconds=lease_seconds,
        )
        self.gateway = gateway
