"""
The rebalance's part of L{s3balance.admin.target.ServiceAdminTarget}: the
admin API's C{/admin/rebalance} calls on a running service (its store, pool,
config, and the rebalance's watcher and mover when it has them).
"""

from __future__ import annotations

from typing import Any, Optional

from s3balance.admin.api import NoRebalance, RebalanceConflict
from s3balance.ops.rebalance import DEFAULT_MARGIN, PAUSED, RUNNING, Balance, members_of, rebalance_document
from s3balance.store.interfaces import RebalanceRecord, RebalanceStateError

__all__ = ["RebalanceAdmin"]


class RebalanceAdmin:
    def __init__(self, service: Any) -> None:
        self.service = service

    def document(self, record: Optional[RebalanceRecord]) -> dict[str, Any]:
        watcher = getattr(self.service, "rebalance_state", None)
        if watcher is not None:
            watcher.learn(record)
        balance = Balance(members_of(self.service.pool))
        return rebalance_document(record, balance, self.service.gateway.config.balancer.drain_rate)

    def _kick(self) -> None:
        mover = getattr(self.service, "rebalancer", None)
        if mover is not None:
            mover.kick()

    async def report(self) -> dict[str, Any]:
        return self.document(await self.service.store.rebalance())

    async def start(self, margin: Optional[float], rate: Optional[int]) -> dict[str, Any]:
        store = self.service.store
        if len(members_of(self.service.pool)) < 2:
            raise RebalanceConflict("fewer than two backends take new objects: nothing to rebalance between")
        if margin is None:
            current = await store.rebalance()
            under_way = current is not None and current.state in (RUNNING, PAUSED)
            margin = current.margin if under_way and current is not None else DEFAULT_MARGIN
        record = await store.start_rebalance(margin, rate)
        if record.state == PAUSED:
            # Asked to rebalance: a paused one goes on.
            record = await store.set_rebalance_state(RUNNING) or record
        self._kick()
        return self.document(record)

    async def set_paused(self, paused: bool, rate: Optional[int]) -> dict[str, Any]:
        try:
            record = await self.service.store.set_rebalance_state(PAUSED if paused else RUNNING, rate)
        except RebalanceStateError as error:
            raise RebalanceConflict(f"{error}: start a new one to rebalance again") from None
        if record is None:
            raise NoRebalance("rebalance")
        if not paused:
            self._kick()
        return self.document(record)

    async def cancel(self) -> dict[str, Any]:
        try:
            record = await self.service.store.cancel_rebalance()
        except RebalanceStateError as error:
            raise RebalanceConflict(str(error)) from None
        if record is None:
            raise NoRebalance("rebalance")
        return self.document(record)
