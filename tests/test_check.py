"""s3balance-check, the operators' smoke test, against a real daemon over SeaweedFS."""

from __future__ import annotations

import io

from twisted.trial.unittest import SynchronousTestCase

from s3balance.ops.check import main
from tests.daemon import ACCESS_KEY, SECRET_KEY, poll, shared_gateway, start_gateway


def run_check(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


def rows(output: str) -> dict[str, str]:
    """{check name: PASS/FAIL/SKIP} from the printed table."""
    found = {}
    for line in output.splitlines():
        name, _, rest = line.partition("  ")
        outcome = rest.split()[0] if rest.split() else ""
        if outcome in ("PASS", "FAIL", "SKIP"):
            found[name.strip()] = outcome
    return found


class SmokeTestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.bucket = self.gateway.new_bucket(prefix="check")

    def args(self, **overrides: str) -> list[str]:
        values = {
            "--endpoint": self.gateway.daemon.endpoint,
            "--access-key": ACCESS_KEY,
            "--secret-key": SECRET_KEY,
            "--bucket": self.bucket,
        }
        values.update(overrides)
        return [item for pair in values.items() for item in pair]

    def test_every_check_passes_and_nothing_is_left_behind(self) -> None:
        status, output = run_check(*self.args())
        self.assertEqual(status, 0, output)
        results = rows(output)
        self.assertEqual(len(results), 10, output)
        self.assertEqual(set(results.values()), {"PASS"}, output)
        self.assertIn("s3balance-check: ok, all 10 checks passed", output)
        client = self.gateway.client()
        self.assertEqual(client.list_objects_v2(Bucket=self.bucket).get("KeyCount"), 0)
        # The daemon's cleaner removes the backend copies too.
        poll(
            lambda: not any(keys for keys in self.gateway.backend_keys(prefix=self.bucket + "/").values()),
            timeout=20,
            message="backend copies of the smoke test's objects were not removed",
        )

    def test_wrong_secret_fails_and_skips_what_depends_on_it(self) -> None:
        status, output = run_check(*self.args(**{"--secret-key": "not-the-secret"}))
        self.assertEqual(status, 1, output)
        results = rows(output)
        self.assertEqual(results["health"], "PASS", output)
        self.assertEqual(results["list buckets"], "FAIL", output)
        self.assertEqual(results["put object"], "SKIP", output)
        self.assertEqual(results["multipart upload"], "SKIP", output)
        self.assertIn("SignatureDoesNotMatch", output)
        self.assertIn("FAILED", output.splitlines()[-1])

    def test_unknown_bucket_fails(self) -> None:
        status, output = run_check(*self.args(**{"--bucket": self.bucket + "-missing"}))
        self.assertEqual(status, 1, output)
        self.assertEqual(rows(output)["list buckets"], "FAIL", output)

    def test_missing_arguments_exit_2(self) -> None:
        self.assertEqual(main(["--endpoint", "http://127.0.0.1:1"], out=io.StringIO()), 2)


class MetricsTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = start_gateway(
            "check-token", metrics={"enabled": True, "path": "/metrics", "token": "scrape-me"}
        )
        self.addCleanup(self.gateway.daemon.stop)
        self.bucket = self.gateway.new_bucket(prefix="check")

    def base(self) -> list[str]:
        return [
            "--endpoint", self.gateway.daemon.endpoint, "--access-key", ACCESS_KEY,
            "--secret-key", SECRET_KEY, "--bucket", self.bucket,
        ]  # fmt: skip

    def test_metrics_check_needs_the_token(self) -> None:
        status, output = run_check(*self.base())
        self.assertEqual(status, 1, output)
        self.assertEqual(rows(output)["metrics"], "FAIL", output)
        self.assertIn("--metrics-token", output)
        status, output = run_check(*self.base(), "--metrics-token", "scrape-me")
        self.assertEqual(status, 0, output)
