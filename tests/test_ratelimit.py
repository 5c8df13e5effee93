"""
Rate limits (s3balance.s3.ratelimit): token buckets and Retry-After on a
controlled clock, the bounded client table, the byte throttle pausing and
resuming producers without fighting backpressure, the config, SlowDown
answers served in-process, and a burst from boto3 against a real daemon.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.exceptions import ClientError
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from s3balance.config import ConfigError, Credential, RateLimit, RateLimitsConfig, parse_config
from s3balance.errors import S3Error
from s3balance.s3.ratelimit import (
    BodyThrottle,
    ClientTable,
    PauseGate,
    RateLimiter,
    TokenBucket,
    client_key,
    retry_after,
)
from tests.fakestore import MemoryStore
from tests.test_connection_limits import ServerFixture, body_of, status_of
from tests.test_reload import CLIENT_SECRET, config_dict


class Producer:
    """A push producer that records its state."""

    def __init__(self) -> None:
        self.paused = False
        self.events: list[str] = []

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        assert not self.paused, "paused twice"
        self.paused = True
        self.events.append("pause")

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        assert self.paused, "resumed while not paused"
        self.paused = False
        self.events.append("resume")

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.events.append("stop")


class Client:
    """What the limiter reads of a request: its peer address."""

    def __init__(self, host: str) -> None:
        self.client = IPv4Address("TCP", host, 1234)


def limits(**values: Any) -> RateLimitsConfig:
    return RateLimitsConfig(**values)


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_refused_until_the_rate_refills(self) -> None:
        bucket = TokenBucket(rate=2.0, burst=3.0, now=0.0)
        self.assertEqual([bucket.take(0.0) for _ in range(3)], [0.0, 0.0, 0.0])
        self.assertEqual(bucket.take(0.0), 0.5, "one token comes back every half second")
        self.assertEqual(bucket.take(0.25), 0.25)
        self.assertEqual(bucket.take(0.5), 0.0)

    def test_refill_stops_at_the_burst(self) -> None:
        bucket = TokenBucket(rate=10.0, burst=5.0, now=0.0)
        bucket.take(0.0, 5)
        self.assertEqual(bucket.full_after(0.0), 0.5)
        self.assertEqual(bucket.full_after(100.0), 0.0)
        self.assertEqual([bucket.take(100.0) for _ in range(6)][-1], 0.1)

    def test_spending_goes_into_debt_paid_back_by_the_rate(self) -> None:
        bucket = TokenBucket(rate=100.0, burst=100.0, now=0.0)
        self.assertEqual(bucket.spend(0.0, 300.0), 2.0)
        self.assertEqual(bucket.debt(1.0), 1.0)
        self.assertEqual(bucket.debt(2.0), 0.0)

    def test_retry_after_is_whole_seconds_rounded_up(self) -> None:
        self.assertEqual([retry_after(s) for s in (0.001, 0.5, 1.0, 1.01, 2.5)], [1, 1, 1, 2, 3])


class RateLimiterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.refused: list[str] = []

    def limiter(self, config: RateLimitsConfig) -> RateLimiter:
        return RateLimiter(config, self.clock, self.refused.append)

    def test_client_over_its_rate_gets_slowdown_with_retry_after(self) -> None:
        limiter = self.limiter(limits(per_client=RateLimit(requests_per_second=0.4, burst=2)))
        limiter.admit_client(Client("192.0.2.1"))
        limiter.admit_client(Client("192.0.2.1"))
        with self.assertRaises(S3Error) as raised:
            limiter.admit_client(Client("192.0.2.1"))
        error = raised.exception
        self.assertEqual((error.code, error.status, error.message), ("SlowDown", 503, "Please reduce your request rate."))
        self.assertEqual(error.headers, (("Retry-After", "3"),), "2.5 s until a token, rounded up")
        self.assertEqual(self.refused, ["client_requests"])
        limiter.admit_client(Client("192.0.2.2"))  # another address has its own bucket
        self.clock.advance(2.5)
        limiter.admit_client(Client("192.0.2.1"))

    def test_credential_limit_and_its_own_limit(self) -> None:
        limiter = self.limiter(limits(per_credential=RateLimit(requests_per_second=1)))
        plain = Credential("a", "s")
        own = Credential("b", "s", rate_limit=RateLimit(requests_per_second=100, burst=3))
        limiter.admit_credential(plain)
        with self.assertRaises(S3Error):
            limiter.admit_credential(plain)
        self.assertEqual(self.refused, ["credential_requests"])
        for _ in range(3):
            limiter.admit_credential(own)
        self.assertIsNone(limiter.admit_credential(None), "anonymous: by client address only")

    def test_a_request_starting_while_the_bytes_are_in_debt_gets_slowdown(self) -> None:
        limiter = self.limiter(limits(per_client=RateLimit(bytes_per_second=1000)))
        owner = limiter.admit_client(Client("192.0.2.1"))
        assert owner is not None and owner.bytes is not None
        owner.bytes.spend(self.clock.seconds(), 3500)  # a body that went through
        with self.assertRaises(S3Error) as raised:
            limiter.admit_client(Client("192.0.2.1"))
        self.assertEqual(raised.exception.headers, (("Retry-After", "3"),))
        self.assertEqual(self.refused, ["client_bytes"])
        self.clock.advance(2.5)
        limiter.admit_client(Client("192.0.2.1"))

    def test_reload_with_the_same_limits_keeps_the_buckets(self) -> None:
        config = limits(per_client=RateLimit(requests_per_second=1))
        limiter = self.limiter(config)
        limiter.admit_client(Client("192.0.2.1"))
        limiter.reconfigure(limits(per_client=RateLimit(requests_per_second=1)))
        with self.assertRaises(S3Error):
            limiter.admit_client(Client("192.0.2.1"))
        limiter.reconfigure(limits(per_client=RateLimit(requests_per_second=5)))
        limiter.admit_client(Client("192.0.2.1"))


class ClientTableTests(SynchronousTestCase):
    def test_idle_entries_expire_as_clients_come(self) -> None:
        table = ClientTable(RateLimit(requests_per_second=10, burst=10), cap=1000)
        for index in range(5):
            table.get(f"192.0.2.{index}", 0.0).requests.take(0.0)  # type: ignore[union-attr]
        self.assertEqual(len(table), 5)
        table.get("198.51.100.1", 0.05).requests.take(0.05)  # type: ignore[union-attr]
        self.assertEqual(len(table), 6, "not full again yet: kept")
        table.get("198.51.100.2", 0.12)
        self.assertEqual(
            list(table.entries), ["198.51.100.1", "198.51.100.2"], "full again after 0.1 s: as good as new, forgotten"
        )

    def test_the_table_never_grows_past_its_cap(self) -> None:
        table = ClientTable(RateLimit(requests_per_second=1, burst=1), cap=100)
        for index in range(1000):
            table.get(f"10.0.{index // 256}.{index % 256}", 0.0).requests.take(0.0)  # type: ignore[union-attr]
        self.assertEqual(len(table), 100)
        self.assertIn("10.0.3.231", table.entries, "the most recent stay")

    def test_ipv6_clients_count_by_their_64(self) -> None:
        self.assertEqual(client_key("2001:db8:1:2:aaaa::1"), client_key("2001:db8:1:2:bbbb::2"))
        self.assertNotEqual(client_key("2001:db8:1:2::1"), client_key("2001:db8:1:3::1"))
        self.assertEqual(client_key("192.0.2.7"), "192.0.2.7")


class BodyThrottleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limiter = RateLimiter(limits(), self.clock)
        self.bucket = TokenBucket(rate=1000.0, burst=1000.0, now=0.0)
        self.reading = Producer()
        self.gate = PauseGate(self.reading)
        self.throttle = BodyThrottle(self.limiter, [self.bucket], self.gate)

    def test_reading_is_paused_in_debt_and_resumed_when_it_is_paid(self) -> None:
        self.throttle.received(800)
        self.assertFalse(self.reading.paused, "within the burst")
        self.throttle.received(700)
        self.assertTrue(self.reading.paused)
        self.clock.advance(0.4)
        self.assertTrue(self.reading.paused, "0.5 s of debt")
        self.clock.advance(0.1)
        self.assertFalse(self.reading.paused)
        self.assertEqual(self.reading.events, ["pause", "resume"])

    def test_throttle_does_not_resume_what_backpressure_holds(self) -> None:
        self.throttle.received(1500)
        self.gate.pauseProducing()  # the upload's backend is slow, too
        self.clock.advance(1.0)
        self.assertTrue(self.reading.paused, "the upload still holds it")
        self.gate.resumeProducing()
        self.assertFalse(self.reading.paused)
        self.assertEqual(self.reading.events, ["pause", "resume"])

    def test_backpressure_does_not_resume_what_the_throttle_holds(self) -> None:
        self.gate.pauseProducing()
        self.throttle.received(1500)
        self.gate.resumeProducing()  # the backend drained
        self.assertTrue(self.reading.paused, "the debt is not paid yet")
        self.clock.advance(0.5)
        self.assertFalse(self.reading.paused)

    def test_answer_producer_is_slowed_through_its_gate(self) -> None:
        backend = Producer()
        gate = self.throttle.gate_for_answer(backend)
        self.throttle.sent(2000)
        self.assertTrue(backend.paused)
        gate.pauseProducing()  # the client's connection is full too
        gate.resumeProducing()  # ... and drained
        self.assertTrue(backend.paused, "still in debt")
        self.clock.advance(1.0)
        self.assertFalse(backend.paused)

    def test_an_unregistered_producer_is_not_resumed(self) -> None:
        backend = Producer()
        self.throttle.gate_for_answer(backend)
        self.throttle.sent(2000)
        self.throttle.answer_producer_gone()
        self.clock.advance(5)
        self.assertEqual(backend.events, ["pause"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_cancels_pending_resumes(self) -> None:
        self.throttle.received(5000)
        self.throttle.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RateLimitConfigTests(SynchronousTestCase):
    def config(self, s3api: dict) -> Any:
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        data = config_dict(directory)
        data["s3api"].update(s3api)
        return parse_config(data)

    def test_off_by_default(self) -> None:
        self.assertFalse(self.config({}).s3api.rate_limited)

    def test_limits_are_read(self) -> None:
        s3api = self.config(
            {
                "credentials": [
                    {"access_key": "k", "secret_key": "s", "rate_limit": {"requests_per_second": 100, "burst": 200,
                                                                          "bytes_per_second": "100MiB"}}
                ],
                "rate_limits": {"per_client": {"requests_per_second": 0.5}, "max_clients": 10},
            }
        ).s3api
        own = s3api.credentials[1].rate_limit
        self.assertEqual((own.requests_per_second, own.burst, own.bytes_per_second), (100.0, 200, 100 * 1024 * 1024))
        self.assertEqual(own.byte_burst, 100 * 1024 * 1024)
        self.assertEqual(s3api.rate_limits.per_client.request_burst, 1.0)
        self.assertEqual(s3api.rate_limits.max_clients, 10)
        self.assertTrue(s3api.rate_limited)

    def test_errors_name_the_key(self) -> None:
        for s3api, key in (
            ({"rate_limits": {"per_client": {"requests_per_second": -1}}}, "s3api.rate_limits.per_client.requests_per_second"),
            ({"rate_limits": {"per_client": {"burst": 5}}}, "s3api.rate_limits.per_client.burst"),
            ({"rate_limits": {"per_credential": {"bytes_per_second": "fast"}}}, "s3api.rate_limits.per_credential.bytes_per_second"),
            ({"rate_limits": {"max_clients": 0}}, "s3api.rate_limits.max_clients"),
            ({"rate_limits": {"per_ip": {}}}, "s3api.rate_limits.per_ip"),
            ({"credentials": [{"access_key": "k", "secret_key": "s", "rate_limit": {"rps": 1}}]},
             "s3api.credentials[0].rate_limit.rps"),
        ):
            with self.assertRaises(ConfigError) as raised:
                self.config(s3api)
            self.assertTrue(str(raised.exception).startswith(key + ":"), str(raised.exception))


def presigned(path: str, secret: str = CLIENT_SECRET) -> str:
    request = botocore.awsrequest.AWSRequest(method="GET", url="http://x" + path)
    credentials = botocore.credentials.Credentials("client", secret)
    botocore.auth.S3SigV4QueryAuth(credentials, "s3", "us-east-1", expires=300).add_auth(request)
    return request.url[len("http://x") :]


class ServedSlowDownTests(SynchronousTestCase):
    """SlowDown as the daemon answers it, in-process (a GatewayService on a MemoryReactorClock)."""

    def setUp(self) -> None:
        self.fixture = ServerFixture(self)
        store = MemoryStore(clock=self.fixture.reactor)
        store.start()
        store.sync_config_buckets(["vbucket"])
        service = self.fixture.service
        service.gateway.store = store

    def set_limits(self, **values: Any) -> None:
        import attrs

        service = self.fixture.service
        config = service.gateway.config
        s3api = attrs.evolve(config.s3api, rate_limits=RateLimitsConfig(**values))
        service.gateway.config = attrs.evolve(config, s3api=s3api)
        service.apply_rate_limits(service.gateway.config)

    def get(self, path: str, host: str = "192.0.2.10", extra: str = "") -> Any:
        protocol, transport = self.fixture.connect(host)
        protocol.dataReceived(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        return transport

    def test_slowdown_has_retry_after_and_s3_xml_and_is_counted(self) -> None:
        self.set_limits(per_client=RateLimit(requests_per_second=1))
        self.assertEqual(status_of(self.get(presigned("/vbucket/k"))), 404)
        transport = self.get(presigned("/vbucket/k"))
        self.assertEqual(status_of(transport), 503)
        self.assertIn(b"\r\nRetry-After: 1\r\n", transport.value())
        self.assertIn(b"<Code>SlowDown</Code><Message>Please reduce your request rate.</Message>", body_of(transport))
        self.assertEqual(self.fixture.sample("s3balance_throttled_requests_total", limit="client_requests"), 1.0)

    def test_slowdown_before_a_body_the_client_waits_to_send(self) -> None:
        self.set_limits(per_client=RateLimit(requests_per_second=1))
        self.get(presigned("/vbucket/k"))
        protocol, transport = self.fixture.connect("192.0.2.10")
        protocol.dataReceived(
            b"PUT /vbucket/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n"
        )
        self.assertEqual(status_of(transport), 503)
        self.assertIn(b"Retry-After: 1\r\n", transport.value())
        self.assertNotIn(b"100 Continue", transport.value())

    def test_forged_key_id_does_not_spend_the_credential_allowance(self) -> None:
        self.set_limits(per_credential=RateLimit(requests_per_second=1))
        for _ in range(5):
            self.assertEqual(status_of(self.get(presigned("/vbucket/k", secret="forged"))), 403)
        self.assertEqual(status_of(self.get(presigned("/vbucket/k"))), 404, "the real key's token is still there")
        self.assertEqual(status_of(self.get(presigned("/vbucket/k"))), 503)
        self.assertEqual(self.fixture.sample("s3balance_throttled_requests_total", limit="credential_requests"), 1.0)

    def test_upload_reading_is_paused_by_the_byte_limit_and_resumed_on_the_clock(self) -> None:
        from tests.signing import sign_request

        self.set_limits(per_client=RateLimit(bytes_per_second=1000))
        signed = sign_request("PUT", "http://x/vbucket/up", {"content-length": "5000"}, access_key="client",
                              secret_key=CLIENT_SECRET)
        headers = "".join(f"{name}: {value}\r\n" for name, value in signed.headers.items())
        protocol, transport = self.fixture.connect("192.0.2.10")
        protocol.dataReceived(f"PUT /vbucket/up HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + b"a" * 3000)
        self.assertEqual(transport.producerState, "paused", "2000 bytes over the burst: 2 s of debt")
        reactor = self.fixture.reactor
        reactor.advance(1.9)
        self.assertEqual(transport.producerState, "paused")
        reactor.advance(0.2)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(status_of(self.get(presigned("/vbucket/k"), host="192.0.2.99")), 404, "another address")
        protocol.dataReceived(b"b" * 1500)
        self.assertEqual(transport.producerState, "paused")
        refused = self.get(presigned("/vbucket/k"))
        self.assertEqual(status_of(refused), 503, "a new request while in debt")
        self.assertIn(b"Retry-After: 2\r\n", refused.value())
        self.assertEqual(self.fixture.sample("s3balance_throttled_requests_total", limit="client_bytes"), 1.0)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([c for c in reactor.getDelayedCalls() if c.func.__name__ == "_due"], [])

    def test_no_limit_means_no_limiter(self) -> None:
        self.assertIsNone(self.fixture.service.gateway.rate_limiter)


class RateLimitDaemonTests(SynchronousTestCase):
    """A burst from boto3 (no retries) against a daemon with a per-credential limit."""

    def test_burst_gets_slowdown_with_retry_after_and_is_counted(self) -> None:
        from tests.daemon import start_gateway

        gateway = start_gateway(
            "ratelimit", s3api={"rate_limits": {"per_credential": {"requests_per_second": 0.2, "burst": 5}}}
        )
        self.addCleanup(gateway.daemon.stop)
        # No retry at all: botocore's retries.max_attempts counts retries, not attempts.
        client = gateway.client(retries={"mode": "standard", "total_max_attempts": 1})
        errors = []
        for _ in range(10):
            try:
                client.list_buckets()
            except ClientError as error:
                errors.append(error)
        self.assertEqual(len(errors), 5, "the burst of 5 passes, the rest are refused")
        response = errors[0].response
        self.assertEqual(response["Error"]["Code"], "SlowDown")
        self.assertEqual(response["ResponseMetadata"]["HTTPStatusCode"], 503)
        retry = int(response["ResponseMetadata"]["HTTPHeaders"]["retry-after"])
        self.assertTrue(1 <= retry <= 5, retry)
        with urllib.request.urlopen(f"{gateway.daemon.endpoint}/metrics", timeout=10) as metrics:
            text = metrics.read().decode()
        self.assertIn('s3balance_throttled_requests_total{limit="credential_requests"} 5.0', text, "each refusal once")

    def test_bodies_are_slowed_to_the_byte_rate_and_arrive_whole(self) -> None:
        import hashlib
        import time

        from tests.daemon import poll, start_gateway

        rate = 256 * 1024
        gateway = start_gateway(
            "ratelimit-bytes",
            s3api={"rate_limits": {"per_credential": {"bytes_per_second": rate, "bytes_burst": rate}}},
        )
        self.addCleanup(gateway.daemon.stop)
        client = gateway.client(retries={"mode": "standard", "total_max_attempts": 1})
        bucket = gateway.new_bucket(client, "rl")
        body = bytes(range(256)) * (4 * rate // 256)  # 4 s of the rate
        started = time.monotonic()
        client.put_object(Bucket=bucket, Key="big", Body=body)
        put_seconds = time.monotonic() - started
        self.assertGreater(put_seconds, 2.0, "3 s of debt beyond the burst, paid while the body flows")

        def get() -> Any:
            try:
                return client.get_object(Bucket=bucket, Key="big")
            except ClientError as error:
                self.assertEqual(error.response["Error"]["Code"], "SlowDown")
                return None

        response = poll(get, timeout=30, interval=0.5, message="still SlowDown")
        started = time.monotonic()
        data = response["Body"].read()
        read_seconds = time.monotonic() - started
        self.assertEqual(hashlib.sha256(data).digest(), hashlib.sha256(body).digest())
        self.assertGreater(read_seconds, 2.0, "the download is paused while the bucket is in debt")
