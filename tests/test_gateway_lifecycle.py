"""
The daemon's life: graceful stop lets a transfer in flight finish; a daemon
killed with SIGKILL mid-upload leaves no row, and after a restart the cleaner
removes what the backend may hold of the unfinished upload; a bad config stops
the start with one line; two daemons on one database run the cluster-wide
jobs in one of them only, and the other takes over when it stops.
"""

from __future__ import annotations

import copy
import http.client
import os
import subprocess
import threading
import time
import urllib.parse

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import (
    ROOT,
    Daemon,
    PatternStream,
    backend_entry,
    background_runs,
    base_config,
    database_counts,
    poll,
    sign,
)
from tests.harness import free_port, harness_dir, shared_seaweedfs, unique_bucket_name
from tests.harness.process import venv_bin

MIB = 1024**2


def slow_body(size: int, chunk: int, pause: float, started: threading.Event):
    source = PatternStream(size, seed=11, block=chunk)
    for piece in source:
        started.set()
        yield piece
        time.sleep(pause)


def start_put(daemon: Daemon, path: str, size: int, chunk: int, pause: float):
    """A slow streamed PUT in a thread; returns (thread, result dict, started event)."""
    started = threading.Event()
    result: dict = {}

    def run() -> None:
        url = daemon.endpoint + path
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            conn.request("PUT", path, body=slow_body(size, chunk, pause, started),
                         headers=sign("PUT", url, {"Content-Length": str(size)}))
            response = conn.getresponse()
            result["status"] = response.status
            response.read()
        except Exception as error:  # the daemon may go away: that is the point
            result["error"] = error
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result, started


def new_daemon(name: str, backend_server, real: str, **sections) -> Daemon:
    workdir = harness_dir() / unique_bucket_name(name)
    workdir.mkdir(parents=True)
    config = base_config([backend_entry(backend_server, real)], ["vb-life"], workdir, **sections)
    return Daemon(config, name=name)


class LifecycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = shared_seaweedfs()
        self.real = unique_bucket_name("real")
        self.server.create_bucket(self.real)

    def backend_keys(self) -> list[str]:
        listing = self.server.client().list_objects_v2(Bucket=self.real)
        return [item["Key"] for item in listing.get("Contents", [])]

    def test_graceful_stop_lets_a_transfer_in_flight_finish(self) -> None:
        daemon = new_daemon("graceful", self.server, self.real, server={"shutdown_grace": "20s"}).start()
        self.addCleanup(daemon.stop)
        thread, result, started = start_put(daemon, "/vb-life/slow", 4 * MIB, 256 * 1024, 0.1)
        self.assertTrue(started.wait(10))
        time.sleep(0.3)
        daemon.process.terminate()
        thread.join(30)
        self.assertEqual(result.get("status"), 200, result)
        # twistd re-raises the signal it stopped on, so the status says SIGTERM.
        self.assertIn(daemon.process._popen.wait(30), (0, -15))
        self.assertEqual(database_counts(daemon, "vb-life")["objects"], 1)

    def test_sigkill_mid_upload_leaves_no_row_and_the_cleaner_removes_the_leftover(self) -> None:
        daemon = new_daemon("crash", self.server, self.real).start()
        self.addCleanup(daemon.stop)
        thread, result, started = start_put(daemon, "/vb-life/torn", 8 * MIB, 256 * 1024, 0.05)
        self.assertTrue(started.wait(10))
        time.sleep(0.5)
        daemon.kill()
        thread.join(30)
        self.assertNotEqual(result.get("status"), 200)
        counts = database_counts(daemon, "vb-life")
        self.assertEqual(counts["objects"], 0)
        self.assertEqual(counts["write_intents"], 1, "the unfinished write must be remembered")
        # Restart with a short intent lease: the cleaner takes over the leftover.
        daemon.start()
        import sqlite3

        with sqlite3.connect(daemon.config["database"]["dsn"]) as db:
            db.execute("UPDATE write_intents SET lease_until = '2000-01-01 00:00:00'")
        poll(lambda: database_counts(daemon, "vb-life") == {"objects": 0, "write_intents": 0, "deletion_queue": 0},
             timeout=20, message="the expired intent was not cleaned up")
        self.assertEqual(self.backend_keys(), [])
        # And it still serves.
        s3 = daemon.client()
        s3.put_object(Bucket="vb-life", Key="after", Body=b"ok")
        self.assertEqual(s3.get_object(Bucket="vb-life", Key="after")["Body"].read(), b"ok")


class StartupErrorTests(SynchronousTestCase):
    def run_daemon(self, config_text: str) -> subprocess.CompletedProcess:
        workdir = harness_dir() / unique_bucket_name("badcfg")
        workdir.mkdir(parents=True)
        path = workdir / "config.yaml"
        path.write_text(config_text)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        return subprocess.run(
            [venv_bin("twistd"), "-n", "--pidfile=", "s3balance", "--config", str(path)],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
        )

    def test_bad_config_stops_the_start_with_one_line_naming_the_key(self) -> None:
        done = self.run_daemon(
            "buckets:\n"
            "  - {name: real-x, endpoint: 'http://127.0.0.1:1', virtual: false, max_size: 10XB}\n"
            "  - {name: vb-x, virtual: true}\n"
        )
        self.assertEqual(done.returncode, 2)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertIn("buckets[0].max_size", lines[0])
        self.assertNotIn("Traceback", done.stdout + done.stderr)

    def test_unknown_key_is_named(self) -> None:
        done = self.run_daemon(
            "buckets:\n"
            "  - {name: real-x, endpoint: 'http://127.0.0.1:1', virtual: false}\n"
            "  - {name: vb-x, virtual: true}\n"
            "s3api: {proxy_modee: true}\n"
        )
        self.assertEqual(done.returncode, 2)
        self.assertIn("s3api.proxy_modee", done.stderr)

    def test_unreachable_database_is_one_line(self) -> None:
        done = self.run_daemon(
            "database: {type: postgres, dsn: 'postgresql://nobody@127.0.0.1:1/none'}\n"
            "s3api: {access_key: a, secret_key: b}\n"
            "buckets:\n"
            "  - {name: real-x, endpoint: 'http://127.0.0.1:1', virtual: false}\n"
            "  - {name: vb-x, virtual: true}\n"
        )
        self.assertEqual(done.returncode, 2)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertIn("database", lines[0])


class WorkerModeTests(SynchronousTestCase):
    def test_several_worker_processes_serve_one_port_and_stop_together(self) -> None:
        server = shared_seaweedfs()
        real = unique_bucket_name("real")
        server.create_bucket(real)
        daemon = new_daemon("workers", server, real, server={"workers": 3}).start()
        self.addCleanup(daemon.stop)

        def children() -> list[int]:
            done = subprocess.run(["pgrep", "-P", str(daemon.process.pid)], capture_output=True, text=True)
            return [int(pid) for pid in done.stdout.split()]

        workers = poll(lambda: len(children()) == 2 and children(), timeout=20, message="workers not started")
        # Connections land on every process; all of them see the same store.
        for index in range(30):
            s3 = daemon.client()
            s3.put_object(Bucket="vb-life", Key=f"w{index}", Body=str(index).encode())
        for index in range(30):
            s3 = daemon.client()
            self.assertEqual(s3.get_object(Bucket="vb-life", Key=f"w{index}")["Body"].read(), str(index).encode())
        # A worker that dies is replaced.
        os.kill(workers[0], 9)
        poll(lambda: len(children()) == 2 and workers[0] not in children(), timeout=20,
             message="the dead worker was not replaced")
        daemon.stop()
        for pid in children() + workers[1:]:
            self.assertFalse(os.path.exists(f"/proc/{pid}/status") and "zombie" not in open(f"/proc/{pid}/status").read().lower(),
                             f"worker {pid} outlived the daemon")


class ClusterJobsTests(SynchronousTestCase):
    """
    Two daemons on one database (SQLite, WAL) in front of one backend, with
    a short C{balancer.job_lease} (renewed, and tried by the other daemon,
    every third of it).
    """

    JOBS = ("deleter", "stale-uploads", "usage-reconcile")
    JOB_LEASE = 5.0

    def setUp(self) -> None:
        self.server = shared_seaweedfs()
        self.real = unique_bucket_name("real")
        self.server.create_bucket(self.real)
        workdir = harness_dir() / unique_bucket_name("cluster")
        workdir.mkdir(parents=True)
        config = base_config([backend_entry(self.server, self.real)], ["vb-life"], workdir,
                             balancer={"job_lease": f"{self.JOB_LEASE}s"})
        self.daemons = []
        for name in ("first", "second"):
            config = copy.deepcopy(config)
            config["server"]["port"] = free_port()
            daemon = Daemon(config, name=f"cluster-{name}").start()
            self.addCleanup(daemon.stop)
            self.daemons.append(daemon)

    def backend_keys(self) -> list[str]:
        listing = self.server.client().list_objects_v2(Bucket=self.real)
        return [item["Key"] for item in listing.get("Contents", [])]

    def leader(self, daemons: list[Daemon], job: str) -> Daemon:
        return poll(
            lambda: [d for d in daemons if background_runs(d.endpoint, job) > 0] and
            [d for d in daemons if background_runs(d.endpoint, job) > 0][0],
            timeout=20, message=f"no daemon runs {job}",
        )

    def test_cluster_jobs_run_in_one_daemon_only_and_move_when_it_stops(self) -> None:
        leaders = {job: self.leader(self.daemons, job) for job in self.JOBS}
        # A few periods (cleanup_period 1s) later, still only there.
        first_runs = background_runs(leaders["deleter"].endpoint, "deleter")
        poll(lambda: background_runs(leaders["deleter"].endpoint, "deleter") >= first_runs + 3, timeout=20,
             message="the deleter stopped running")
        for job, leader in leaders.items():
            other = self.daemons[1 - self.daemons.index(leader)]
            self.assertEqual(background_runs(other.endpoint, job), 0, f"{job} ran in both daemons")
        # Objects deleted through either daemon leave their backend (the leader deletes them).
        for daemon in self.daemons:
            s3 = daemon.client()
            s3.put_object(Bucket="vb-life", Key=f"gone-{daemon.port}", Body=b"x")
            s3.delete_object(Bucket="vb-life", Key=f"gone-{daemon.port}")
        poll(lambda: self.backend_keys() == [], timeout=20, message="the deletions were not carried out")
        # The deleter's daemon stops: it gives its leases up, the other takes them at its next try.
        leader = leaders["deleter"]
        other = self.daemons[1 - self.daemons.index(leader)]
        leader.stop()
        self.leader([other], "deleter")
        s3 = other.client()
        s3.put_object(Bucket="vb-life", Key="after", Body=b"x")
        s3.delete_object(Bucket="vb-life", Key="after")
        poll(lambda: self.backend_keys() == [], timeout=20, message="the new leader did not delete")
