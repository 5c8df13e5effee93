"""
C{python -m bench}: start SeaweedFS, s3balance and nginx, measure, print the
table and the targets, optionally write JSON.  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT = ("put4k", "get4k", "put64m", "get64m")
SECTIONS = ("latency", "sdk", "rss", "list", "profile", "replicas", "failover")
DEFAULT_SECTIONS = THROUGHPUT + ("latency", "sdk", "rss", "list", "replicas", "failover")

KIB, MIB, GIB = 1024, 1024**2, 1024**3


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("ib", "").replace("b", "")
    units = {"k": KIB, "m": MIB, "g": GIB}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def parse_counts(text: str) -> list[int]:
    return [int(float(x)) for x in text.replace("_", "").split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="s3balance vs SeaweedFS direct vs nginx, in one run (docs/benchmarks.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny counts for a smoke run (< 60 s); not a measurement")
    p.add_argument(
        "--only",
        default="",
        help="comma list of: put4k,get4k,put64m,get64m (or e.g. put4k@8), throughput, latency, sdk, rss, list, profile, "
        "replicas (64 MiB PUT, replicas: 2 vs 1), failover (GET latency with the primary copy's backend dead) "
        f"(default: {','.join(DEFAULT_SECTIONS)}, plus profile with --profile)",
    )
    p.add_argument("--rounds", type=int, default=None, help="rounds per scenario (default 3; quick 1)")
    p.add_argument("--duration", type=float, default=None, help="seconds per round, 4 KiB (default 5; quick 0.5)")
    p.add_argument("--large-duration", type=float, default=None,
                   help="seconds per round, 64 MiB; every client does at least one object (default 5; quick 0)")
    p.add_argument("--clients", default="1,8", help="client counts for the throughput scenarios")
    p.add_argument("--client-mode", choices=("thread", "process"), default="thread",
                   help="load generator workers: threads in this process (they share one GIL, so the client "
                   "takes at most one core) or processes (no GIL cap, but 8 busy processes crowd the servers "
                   "out of a 2-core machine)")
    p.add_argument("--small-size", type=parse_size, default=4 * KIB)
    p.add_argument("--large-size", type=parse_size, default=None, help="the big objects (default 64MiB; quick 16MiB)")
    p.add_argument("--get-keys", type=int, default=50, help="4 KiB objects per client that GETs cycle through")
    p.add_argument("--latency-requests", type=int, default=None,
                   help="requests per phase and round of the latency breakdown (default 500; quick 50)")
    p.add_argument("--failover-size", type=parse_size, default=4 * KIB, help="the objects the failover GETs read")
    p.add_argument("--failover-objects", type=int, default=None,
                   help="objects written through each failover daemon (default 100; quick 10)")
    p.add_argument("--failover-requests", type=int, default=None,
                   help="GETs per failover phase, half of them of objects whose primary is dead (default 400; quick 40)")
    p.add_argument("--failover-rounds", type=int, default=None,
                   help="rounds of alive / dead blocks on the never-down failover daemon (default 10; quick 2)")
    p.add_argument("--sdk-duration", type=float, default=None, help="seconds per boto3 4 KiB phase (default 3)")
    p.add_argument("--rss-size", type=parse_size, default=None, help="bytes each RSS client streams (default 1GiB; quick 64MiB)")
    p.add_argument("--rss-clients", type=int, default=8)
    p.add_argument("--list-keys", type=parse_counts, default=None,
                   help="key counts for the listing test, e.g. 10000,1000000 (default 10000)")
    p.add_argument("--list-versions", type=parse_counts, default=[1, 3],
                   help="versions per key for the listing test, e.g. 1,3: each key count is measured with 1, "
                   "then with 3 (2 noncurrent + the latest) on the same database")
    p.add_argument("--list-db", default="sqlite,postgres", help="databases for the listing test")
    p.add_argument("--list-repeat", type=int, default=None, help="timed requests per page (default 9; quick 3)")
    p.add_argument("--postgres-url", default=None,
                   help="admin URL of the PostgreSQL server (a fresh database is created on it); "
                   "default $S3BALANCE_BENCH_POSTGRES_URL or postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    p.add_argument("--profile", action="store_true", help="run py-spy on the daemon under 4 KiB PUT/GET load")
    p.add_argument("--profile-seconds", type=float, default=None, help="seconds of each profiled load (default 10; quick 3)")
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--profile-gil", action="store_true",
                   help="sample only the thread holding the GIL (py-spy --gil): Python CPU, without GIL waits")
    p.add_argument("--profile-nonblocking", action="store_true",
                   help="py-spy samples without pausing the daemon (less overhead, stacks may be torn)")
    p.add_argument("--profile-syscalls", action="store_true",
                   help="with --profile: also count the daemon's system calls per 4 KiB request (strace -c)")
    p.add_argument("--profile-dir", default=None, help="where py-spy's raw stacks go (default: build/bench-profile, git-ignored)")
    p.add_argument("--daemon-args", default="", help="extra twistd options, e.g. '--reactor=poll'")
    p.add_argument("--daemon-config", action="append", default=[], metavar="KEY=YAML",
                   help="override a daemon config value, e.g. metrics.enabled=false (repeatable)")
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx column")
    p.add_argument("--nginx-workers", default="auto", help="nginx worker_processes")
    p.add_argument("--nginx-buffer", default="",
                   help="nginx proxy_buffer_size, e.g. 64k (default: nginx's own, one memory page)")
    p.add_argument("--floor", action="store_true",
                   help="also measure a bare Twisted proxy (bench/floor.py) as the target 'twisted': "
                   "the least a Python/Twisted proxy costs here")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories (logs, data)")
    return p


def settle(args: argparse.Namespace) -> None:
    quick = args.quick
    defaults = {
        "rounds": (1, 3),
        "duration": (0.5, 5.0),
        "large_duration": (0.0, 5.0),
        "sdk_duration": (0.3, 3.0),
        "rss_size": (64 * MIB, GIB),
        "large_size": (16 * MIB, 64 * MIB),
        "list_keys": ([10_000], [10_000]),
        "list_repeat": (3, 9),
        "profile_seconds": (3.0, 10.0),
        "latency_requests": (50, 500),
        "failover_objects": (10, 100),
        "failover_requests": (40, 400),
        "failover_rounds": (2, 10),
    }
    for name, (small, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)


def selected_sections(args: argparse.Namespace) -> tuple[set[str], set[str]]:
    """-> (throughput selectors, other sections)."""
    if not args.only:
        chosen = set(DEFAULT_SECTIONS)
        if args.profile:
            chosen.add("profile")
    else:
        chosen = {x.strip() for x in args.only.split(",") if x.strip()}
        if "throughput" in chosen:
            chosen.discard("throughput")
            chosen.update(THROUGHPUT)
        if args.profile:
            chosen.add("profile")
    unknown = [x for x in chosen if x not in SECTIONS and x.split("@")[0] not in THROUGHPUT]
    if unknown:
        raise SystemExit(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    return {x for x in chosen if x.split("@")[0] in THROUGHPUT}, {x for x in chosen if x in SECTIONS}


def _version(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"


def durable_commit_ms(directory: str, count: int = 200) -> float:
    """
    p50 of one small durable SQLite commit (WAL, synchronous=FULL) in
    C{directory}: the fsync every acknowledged PUT waits for, a floor under
    the added PUT latency at one client that no proxy without a database has.
    """
    import sqlite3
    import statistics
    import tempfile

    with tempfile.TemporaryDirectory(dir=directory) as where:
        db = sqlite3.connect(os.path.join(where, "probe.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        times = []
        for _ in range(count):
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (v) VALUES (?)", ("x" * 200,))
            db.execute("COMMIT")
            times.append(time.perf_counter() - started)
        db.close()
    return round(statistics.median(times) * 1000, 3)


def meta(args: argparse.Namespace) -> dict:
    from bench.nginx import find_nginx
    from tests.harness.process import harness_dir, venv_bin

    commit = _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _version(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    nginx = find_nginx()
    return {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": commit + ("+dirty" if dirty not in ("?", "") else ""),
        "argv": sys.argv[1:],
        "quick": args.quick,
        "cores": os.cpu_count(),
        "loadavg_start": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "nginx": _version([nginx, "-v"]) if nginx else None,
        "weed": _version([venv_bin("weed"), "version"]),
        "durable_commit_ms": durable_commit_ms(str(harness_dir())),
        "client_mode": args.client_mode,
        "nginx_buffer": args.nginx_buffer or "default",
        "rounds": args.rounds,
        "duration": args.duration,
        "large_duration": args.large_duration,
        "small_size": args.small_size,
        "large_size": args.large_size,
        "notes": [],
    }


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    settle(args)
    throughput_only, sections = selected_sections(args)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    from bench import failover, latency, listing, profiling, replicas, report, rss, sdk, throughput
    from bench.environment import start_environment
    from bench.workers import WorkerPool
    from tests.harness import harness_dir

    results: dict = {"meta": meta(args)}
    log = lambda text: print(text, flush=True)  # noqa: E731
    if results["meta"]["loadavg_start"] > 0.5 * (os.cpu_count() or 1):
        note = (f"the machine is busy (load average {results['meta']['loadavg_start']}): "
                "numbers are noisy; measure on a quiet machine")
        results["meta"]["notes"].append(note)
        log("WARNING: " + note)
    began = time.monotonic()
    clients = [int(x) for x in args.clients.split(",") if x.strip()]
    max_clients = max(clients + ([args.rss_clients] if "rss" in sections else []) + [8 if "profile" in sections else 1])
    env = None
    pool = None
    exit_code = 0
    try:
        env = start_environment(
            daemon_overrides=args.daemon_config,
            twistd_args=args.daemon_args,
            use_nginx=not args.no_nginx,
            nginx_workers=args.nginx_workers,
            nginx_buffer=args.nginx_buffer,
            floor=args.floor,
            log=log,
        )
        results["meta"]["notes"].extend(env.notes)
        log(f"logs and data under {harness_dir()}")
        pool = WorkerPool(max_clients, args.client_mode)
        targets = env.targets
        balancer = env.target("s3balance")
        assert balancer is not None
        if throughput_only:
            only = set(throughput_only)
            chosen = throughput.scenarios(
                args.small_size, args.large_size, clients, args.duration, args.large_duration, 1, only
            )
            log(f"throughput: {len(chosen)} scenarios x {args.rounds} rounds x {len(targets)} targets")
            results["throughput"] = throughput.run(pool, targets, chosen, args.rounds, args.get_keys, log=log)
        if "latency" in sections:
            log("where a 1-client request's added latency goes ...")
            direct = env.target("direct")
            assert direct is not None
            results["latency"] = latency.run(direct, balancer, args.small_size, args.latency_requests, log=log)
        if "sdk" in sections:
            log("real SDK (boto3, 1 client) ...")
            whole = [t for t in targets if not t.small_only]  # its big objects too
            results["sdk"] = sdk.run(whole, args.rounds, args.small_size, args.large_size, args.sdk_duration, log=log)
        if "profile" in sections:
            log("profiling the daemon with py-spy ...")
            outdir = Path(args.profile_dir or ROOT / "build" / "bench-profile").resolve()
            results["profile"] = profiling.run(
                pool, balancer, args.profile_seconds, outdir, args.small_size, 8,
                rate=args.profile_rate, nonblocking=args.profile_nonblocking, gil=args.profile_gil, log=log
            )
            if args.profile_syscalls:
                results["syscalls"] = profiling.syscalls(
                    pool, balancer, args.profile_seconds, outdir, args.small_size, 8, log=log
                )
        if "replicas" in sections:
            log("64 MiB PUT with replicas: 2 beside replicas: 1 ...")
            results["replicas"] = replicas.run(
                pool, env, clients, args.rounds, args.large_size, args.large_duration,
                daemon_overrides=args.daemon_config, twistd_args=args.daemon_args, log=log,
            )
            results["meta"]["notes"].extend(results["replicas"]["notes"])
        if "failover" in sections:
            log("GET latency when the primary copy's backend is dead ...")
            results["failover"] = failover.run(
                env, args.failover_size, args.failover_objects, args.failover_requests, args.failover_rounds,
                daemon_overrides=args.daemon_config, twistd_args=args.daemon_args, log=log,
            )
            results["meta"]["notes"].extend(results["failover"]["notes"])
        if "rss" in sections:
            log("daemon memory under big streams ...")
            results["rss"] = rss.run(pool, balancer, args.rss_clients, args.rss_size, log=log)
        if "list" in sections:
            log("listing ...")
            results["listing"] = listing.run(
                env.seaweed,
                args.list_keys,
                [x.strip() for x in args.list_db.split(",") if x.strip()],
                args.list_repeat,
                postgres_url=args.postgres_url or listing.DEFAULT_POSTGRES_URL,
                twistd_args=args.daemon_args,
                daemon_overrides=args.daemon_config,
                log=log,
                version_counts=args.list_versions,
            )
    except KeyboardInterrupt:
        log("interrupted; reporting what was measured")
        exit_code = 130
    finally:
        if pool is not None:
            pool.close()
        if env is not None:
            try:
                daemon_log = env.daemon.log()
                tracebacks = daemon_log.count("Traceback")
                if tracebacks:
                    results["meta"]["notes"].append(
                        f"the daemon logged {tracebacks} tracebacks: {env.daemon.workdir / 'daemon.log'}"
                    )
            except OSError:
                pass
            env.close(keep=args.keep)
        if not args.keep:
            shutil.rmtree(harness_dir(), ignore_errors=True)
    results["meta"]["loadavg_end"] = round(os.getloadavg()[0], 2)
    results["meta"]["seconds"] = round(time.monotonic() - began, 1)
    results["targets"] = report.evaluate_targets(results)
    report.print_report(results)
    profile = results.get("profile")
    if profile:
        for label, analysis in profile.items():
            if "samples" in analysis:
                profiling.print_profile(f"{label} @8 clients", analysis)
    if results.get("latency"):
        latency.print_latency(results["latency"], args.small_size)
    if results.get("syscalls"):
        profiling.print_syscalls(results["syscalls"])
    if results.get("failover"):
        failover.print_failover(results["failover"])
    log(f"total {results['meta']['seconds']:.0f} s")
    if args.json:
        report.write_json(args.json, results)
        log(f"results written to {args.json}")
    return exit_code
