"""
Health and capacity through a running daemon: a backend that dies is marked
down by the health checks, gets no new objects and answers its objects' reads
with 503 until it is back; full backends get no new objects.
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Daemon, backend_entry, base_config, poll
from tests.harness import SeaweedFS, harness_dir, shared_seaweedfs, unique_bucket_name


def _daemon(backends: list[dict], name: str, **sections) -> Daemon:
    workdir = harness_dir() / unique_bucket_name(name)
    workdir.mkdir(parents=True)
    daemon = Daemon(base_config(backends, ["vb-main"], workdir, **sections), name=name).start()
    return daemon


class BackendOutageTests(SynchronousTestCase):
    def test_dead_backend_is_marked_down_skipped_and_comes_back(self) -> None:
        mortal = SeaweedFS(name="mortal")
        mortal.start()
        self.addCleanup(mortal.close)
        mortal.create_bucket("real-mortal")
        steady = shared_seaweedfs()
        steady_bucket = unique_bucket_name("real")
        steady.create_bucket(steady_bucket)
        daemon = _daemon(
            [backend_entry(mortal, "real-mortal"), backend_entry(steady, steady_bucket)],
            "outage",
            balancer={"unhealthy_threshold": 2, "healthy_threshold": 1, "health_check_period": "0.5s",
                      "health_timeout": "1s"},
        )
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        for index in range(4):
            s3.put_object(Bucket="vb-main", Key=f"before/{index}", Body=b"x")
        on_mortal = mortal.client().list_objects_v2(Bucket="real-mortal").get("KeyCount", 0)
        self.assertEqual(on_mortal, 2)

        mortal.kill()
        poll(lambda: not daemon.health()["backends"]["real-mortal"]["up"], timeout=15,
             message="the dead backend was not marked down")
        self.assertEqual(daemon.health()["status"], "degraded")
        # New objects all go to the live backend.
        for index in range(4):
            s3.put_object(Bucket="vb-main", Key=f"during/{index}", Body=b"y")
        self.assertEqual(steady.client().list_objects_v2(Bucket=steady_bucket)["KeyCount"], 6)
        # Objects on the dead backend fail fast with 503; the others read fine.
        failures = 0
        for index in range(4):
            try:
                s3.get_object(Bucket="vb-main", Key=f"before/{index}")["Body"].read()
            except ClientError as error:
                self.assertEqual(error.response["ResponseMetadata"]["HTTPStatusCode"], 503)
                failures += 1
        self.assertEqual(failures, 2)

        mortal.restart()
        poll(lambda: daemon.health()["backends"]["real-mortal"]["up"], timeout=20,
             message="the backend did not come back up")
        for index in range(4):
            self.assertEqual(s3.get_object(Bucket="vb-main", Key=f"before/{index}")["Body"].read(), b"x")
        self.assertNotIn("Traceback", daemon.log())


class CapacityTests(SynchronousTestCase):
    def test_full_backends_get_no_new_objects(self) -> None:
        server = shared_seaweedfs()
        small, large = unique_bucket_name("small"), unique_bucket_name("large")
        server.create_bucket(small)
        server.create_bucket(large)
        daemon = _daemon(
            [backend_entry(server, small, max_size="1MB"), backend_entry(server, large, max_size="3MB")],
            "capacity",
            balancer={"strategy": "least-space"},
        )
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        s3.put_object(Bucket="vb-main", Key="a", Body=b"a" * (1024 * 1024))  # only 'large' has room
        self.assertEqual(server.client().list_objects_v2(Bucket=large)["KeyCount"], 1)
        s3.put_object(Bucket="vb-main", Key="b", Body=b"b" * (1024 * 1024))
        s3.put_object(Bucket="vb-main", Key="c", Body=b"c" * (900 * 1024))
        with self.assertRaises(ClientError) as raised:
            s3.put_object(Bucket="vb-main", Key="d", Body=b"d" * (1024 * 1024 + 1))
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 507)
        with self.assertRaises(ClientError):
            s3.head_object(Bucket="vb-main", Key="d")
        # Deleting frees room again.
        s3.delete_object(Bucket="vb-main", Key="a")
        s3.put_object(Bucket="vb-main", Key="d", Body=b"d" * (1024 * 1024 + 1))
        self.assertEqual(s3.get_object(Bucket="vb-main", Key="d")["Body"].read(), b"d" * (1024 * 1024 + 1))


class OperationLimitTests(SynchronousTestCase):
    def test_backend_over_its_monthly_limits_stops_taking_those_operations(self) -> None:
        server = shared_seaweedfs()
        limited, free = unique_bucket_name("limited"), unique_bucket_name("free")
        server.create_bucket(limited)
        server.create_bucket(free)
        daemon = _daemon(
            [
                backend_entry(server, limited, operation_limits={"type_a": 2, "type_b": 2}),
                backend_entry(server, free),
            ],
            "limits",
        )
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        for index in range(6):
            s3.put_object(Bucket="vb-main", Key=f"k{index}", Body=b"z")
        on_limited = [o["Key"] for o in server.client().list_objects_v2(Bucket=limited).get("Contents", [])]
        self.assertEqual(len(on_limited), 2, "class A limit not honoured")
        # HEAD is answered from the store: it costs the backend nothing.
        for index in range(6):
            s3.head_object(Bucket="vb-main", Key=f"k{index}")
        statuses = []
        for _ in range(2):
            for index in range(6):
                try:
                    s3.get_object(Bucket="vb-main", Key=f"k{index}")["Body"].read()
                    statuses.append(200)
                except ClientError as error:
                    statuses.append(error.response["ResponseMetadata"]["HTTPStatusCode"])
        # Two GETs reach the limited backend, the next two are refused.
        self.assertEqual(statuses.count(503), 2, statuses)
