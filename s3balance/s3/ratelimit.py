"""
Rate limits of the S3 face: requests per second and body bytes per second,
per credential and per client address, as token buckets (a rate and a
burst).

Requests: each S3 request takes one token from its client address's bucket
when its headers are routed (before authentication: a flood of forged
signatures costs no signature check beyond the limit) and, once its
signature was verified, one from its credential's bucket (after: a forged
key id must not drain someone else's bucket).  With no token left the
request is answered C{503 SlowDown} with C{Retry-After} (whole seconds,
rounded up, until a token is back) and counted in
C{s3balance_throttled_requests_total{limit}}.

Bytes: request and response body bytes are taken from the same two owners'
byte buckets as they flow, and a bucket may go into debt by what is already
on its way.  A request that starts while a byte bucket is in debt is
answered C{SlowDown} as above; a body already flowing is never cut but
slowed: its producer (the client connection's reading for an upload, the
backend connection for a download) is paused until the debt is paid back,
on the reactor's clock.  Pausing goes through L{PauseGate}, which counts
who holds a producer paused, so the throttle and the backpressure of the
upload or the client's connection never resume what the other paused:
nothing is buffered.

Each process limits on its own (C{server.workers: N}: each of the N
processes allows the configured rates).  The per-client table is bounded:
an entry whose buckets would be full again is forgotten (checked as clients
come), and over C{max_clients} the least recently seen entry goes, so a
client spraying addresses cannot grow it.  IPv6 clients are counted by
their /64.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from s3balance.errors import S3Error

if TYPE_CHECKING:
    from s3balance.config.schema import Credential, RateLimit, RateLimitsConfig

__all__ = [
    "LIMIT_LABELS",
    "ClientTable",
    "PauseGate",
    "RateLimiter",
    "TokenBucket",
    "retry_after",
    "slow_down",
]

# The values of the metric's label: which bucket refused.
LIMIT_LABELS = ("credential_requests", "credential_bytes", "client_requests", "client_bytes")


class TokenBucket:
    """
    C{burst} tokens at most, C{rate} more every second.  Amounts may be
    taken beyond what is there (L{spend}): the bucket is then in debt until
    the rate has paid it back.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> float:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens

    def take(self, now: float, amount: float = 1.0) -> float:
        """Take C{amount} when there: 0.0; else take nothing and return the seconds until it is."""
        tokens = self._refill(now)
        if tokens >= amount:
            self.tokens = tokens - amount
            return 0.0
        return (amount - tokens) / self.rate

    def spend(self, now: float, amount: float) -> float:
        """Take C{amount}, into debt if need be; the seconds until the debt is paid (0.0: none)."""
        self.tokens = self._refill(now) - amount
        return self.debt(now)

    def debt(self, now: float) -> float:
        """The seconds until the bucket is out of debt (0.0: it is not in debt)."""
        tokens = self._refill(now)
        return -tokens / self.rate if tokens < 0 else 0.0

    def full_after(self, now: float) -> float:
        """The seconds until the bucket is full again."""
        return (self.burst - self._refill(now)) / self.rate


def retry_after(seconds: float) -> int:
    """C{Retry-After}: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))


def slow_down(seconds: float) -> S3Error:
    """S3's 503 SlowDown, with C{Retry-After} for C{seconds}."""
    error = S3Error("SlowDown")
    error.headers = (("Retry-After", str(retry_after(seconds))),)
    return error


class Owner:
    """The buckets of one credential or client address (either may be None: no such limit)."""

    __slots__ = ("bytes", "requests")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.requests = (
            TokenBucket(limit.requests_per_second, limit.request_burst, now) if limit.requests_per_second else None
        )
        self.bytes = TokenBucket(limit.bytes_per_second, limit.byte_burst, now) if limit.bytes_per_second else None

    def idle(self, now: float) -> bool:
        """Whether every bucket is full again: the entry is as good as a new one."""
        return all(bucket is None or bucket.full_after(now) <= 0 for bucket in (self.requests, self.bytes))


def client_key(host: Optional[str]) -> str:
    """The table's key of a client address: the address, or its /64 for IPv6."""
    if not host or ":" not in host:
        return host or "?"
    try:
        return str(ipaddress.IPv6Network(f"{host}/64", strict=False).network_address) + "/64"
    except ValueError:
        return host


class ClientTable:
    """
    The per-client L{Owner}s, least recently seen first, at most C{cap} of
    them.  Entries as good as new (every bucket full again) are dropped from
    the old end as clients come: memory follows the clients of the last
    refill period, never every address ever seen.
    """

    def __init__(self, limit: RateLimit, cap: int) -> None:
        self.limit = limit
        self.cap = cap
        self.entries: OrderedDict[str, Owner] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str, now: float) -> Owner:
        entries = self.entries
        owner = entries.get(key)
        if owner is None:
            self.expire(now)
            while len(entries) >= self.cap:
                entries.popitem(last=False)
            owner = entries[key] = Owner(self.limit, now)
        else:
            entries.move_to_end(key)
        return owner

    def expire(self, now: float, at_most: int = 8) -> None:
        """Drop up to C{at_most} idle entries from the least recently seen end."""
        entries = self.entries
        for _ in range(at_most):
            if not entries:
                return
            key, owner = next(iter(entries.items()))
            if not owner.idle(now):
                return
            del entries[key]


@implementer(IPushProducer)
class PauseGate:
    """
    A producer as several holders see it: paused while any of them holds it
    paused, resumed when the last lets go.  Each holder pauses and resumes
    in turn (never twice in a row), as Twisted's transports and
    L{s3balance.backends.streaming.PipeProducer} do.
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.holds = 0

    def pauseProducing(self) -> None:
        self.holds += 1
        if self.holds == 1:
            self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        if self.holds == 0:
            return
        self.holds -= 1
        if self.holds == 0:
            self.producer.resumeProducing()

    def stopProducing(self) -> None:
        self.producer.stopProducing()


class BodyThrottle:
    """
    Slows one request's bodies to its byte buckets: called with every chunk
    in (L{received}) and out (L{sent}); when a bucket is in debt, the gate
    of that direction is held paused until the reactor's clock says it is
    paid back.
    """

    def __init__(self, limiter: RateLimiter, buckets: list[TokenBucket], gate_in: Optional[PauseGate]) -> None:
        self.limiter = limiter
        self.buckets = buckets
        self.gate_in = gate_in
        self.gate_out: Optional[PauseGate] = None
        self._held: dict[str, Any] = {}  # direction -> the pending resume call

    def _spend(self, amount: int) -> float:
        now = self.limiter.clock()
        return max(bucket.spend(now, amount) for bucket in self.buckets)

    def received(self, amount: int) -> None:
        wait = self._spend(amount)
        if wait > 0 and self.gate_in is not None:
            self._hold("in", self.gate_in, wait)

    def gate_for_answer(self, producer: Any) -> PauseGate:
        """The response's producer, as the client connection and this throttle both pause it."""
        self.answer_producer_gone()
        self.gate_out = PauseGate(producer)
        return self.gate_out

    def answer_producer_gone(self) -> None:
        """The response's producer was unregistered: nothing of it is to be resumed."""
        self.gate_out = None
        call = self._held.pop("out", None)
        if call is not None and call.active():
            call.cancel()

    def sent(self, amount: int) -> None:
        wait = self._spend(amount)
        if wait > 0 and self.gate_out is not None:
            self._hold("out", self.gate_out, wait)

    def _hold(self, direction: str, gate: PauseGate, wait: float) -> None:
        if direction in self._held:
            return  # paused already; the check when it is due looks again
        gate.pauseProducing()
        self._held[direction] = self.limiter.call_later(wait, self._due, direction, gate)

    def _due(self, direction: str, gate: PauseGate) -> None:
        now = self.limiter.clock()
        wait = max(bucket.debt(now) for bucket in self.buckets)
        if wait > 0:
            self._held[direction] = self.limiter.call_later(wait, self._due, direction, gate)
            return
        del self._held[direction]
        gate.resumeProducing()

    def stop(self) -> None:
        """The request ended: no resume is pending any more (the producers are gone)."""
        for call in self._held.values():
            if call.active():
                call.cancel()
        self._held.clear()


class RateLimiter:
    """
    The limits of C{config} (C{s3api.rate_limits} and the credentials'
    C{rate_limit}) for one process.

    @param clock: the reactor (C{seconds}, C{callLater}); tests pass a
        L{twisted.internet.task.Clock}.
    @param throttled: called with the label of the limit that refused a
        request (the metric).
    """

    def __init__(
        self, config: RateLimitsConfig, reactor: Any, throttled: Optional[Callable[[str], None]] = None
    ) -> None:
        self.reactor = reactor
        self.clock: Callable[[], float] = reactor.seconds
        self.throttled = throttled
        self.config = config
        self.clients = ClientTable(config.per_client, config.max_clients) if config.per_client.enabled else None
        self.credentials: dict[str, tuple[RateLimit, Owner]] = {}

    def call_later(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:
        return self.reactor.callLater(delay, f, *args)

    def reconfigure(self, config: RateLimitsConfig) -> None:
        """New limits (a reload); unchanged ones keep their buckets, changed ones start again full."""
        if config == self.config:
            return
        self.config = config
        self.clients = ClientTable(config.per_client, config.max_clients) if config.per_client.enabled else None
        self.credentials = {}

    def _refuse(self, label: str, seconds: float) -> S3Error:
        if self.throttled is not None:
            self.throttled(label)
        return slow_down(seconds)

    def _admit(self, owner: Owner, prefix: str, now: float) -> None:
        if owner.bytes is not None:
            debt = owner.bytes.debt(now)
            if debt > 0:
                raise self._refuse(prefix + "_bytes", debt)
        if owner.requests is not None:
            wait = owner.requests.take(now)
            if wait > 0:
                raise self._refuse(prefix + "_requests", wait)

    def admit_client(self, request: Any) -> Optional[Owner]:
        """Take a request token of C{request}'s client address (L{S3Error} SlowDown when none); its Owner."""
        clients = self.clients
        if clients is None:
            return None
        now = self.clock()
        owner = clients.get(client_key(getattr(request.client, "host", None)), now)
        self._admit(owner, "client", now)
        return owner

    def admit_credential(self, credential: Optional[Credential], now: Optional[float] = None) -> Optional[Owner]:
        """Take a request token of a verified C{credential} (L{S3Error} SlowDown when none); its Owner."""
        if credential is None:
            return None
        limit = credential.rate_limit or self.config.per_credential
        if not limit.enabled:
            return None
        now = self.clock() if now is None else now
        known = self.credentials.get(credential.access_key)
        if known is None or known[0] != limit:
            known = self.credentials[credential.access_key] = (limit, Owner(limit, now))
        owner = known[1]
        self._admit(owner, "credential", now)
        return owner

    def admit_verified(self, request: Any, credential: Optional[Credential], client: Optional[Owner]) -> None:
        """After authentication: the credential's request token, then the byte throttle of both owners."""
        owner = self.admit_credential(credential)
        self.throttle_bodies(request, [client, owner])

    def throttle_bodies(self, request: Any, owners: list[Optional[Owner]]) -> None:
        """Count C{request}'s body bytes against the byte buckets of C{owners}, slowing its bodies."""
        buckets = [owner.bytes for owner in owners if owner is not None and owner.bytes is not None]
        if not buckets:
            return
        transport = request.channel.transport if request.channel is not None else None
        gate_in = PauseGate(transport) if transport is not None else None
        throttle = BodyThrottle(self, buckets, gate_in)
        request.body_gate = gate_in
        request.throttle = throttle
        request.notifyFinish().addBoth(lambda _: throttle.stop())


def limiter_for(
    s3api: Any, reactor: Any, throttled: Optional[Callable[[str], None]], current: Optional[RateLimiter]
) -> Optional[RateLimiter]:
    """
    The limiter for C{s3api} (an L{S3APIConfig}): None when it configures
    no limit, else C{current} with the new limits, or a new one.
    """
    if not s3api.rate_limited:
        return None
    if current is None:
        return RateLimiter(s3api.rate_limits, reactor, throttled)
    current.reconfigure(s3api.rate_limits)
    return current
