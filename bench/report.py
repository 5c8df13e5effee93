"""
The results table, the targets with PASS/FAIL, and the JSON file.

Ratios: s3balance ÷ direct and s3balance ÷ nginx of the same figure (for
rates higher is better, for latencies and CPU lower is better).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Optional

TARGET_NAMES = ("direct", "s3balance", "nginx")


def _fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 10000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _cpu(us: Optional[float]) -> str:
    if us is None or math.isnan(us):
        return "-"
    return f"{us / 1000:.1f} ms" if us >= 10000 else f"{us:.0f} us"


def throughput_rows(results: dict[str, dict]) -> list[list[str]]:
    rows = []
    for scenario_id, data in results.items():
        scenario, targets = data["scenario"], data["targets"]
        size = scenario["size"]
        size_text = f"{size // 2**20} MiB" if size >= 2**20 else f"{size // 1024} KiB"

        def get(name: str, field: str, targets: dict = targets) -> Optional[float]:
            return targets.get(name, {}).get(field)

        metrics: list[tuple[str, str, int, bool]] = []
        if scenario["large"]:
            metrics.append(("MB/s", "mb_per_s", 0, False))
        else:
            metrics.append(("ops/s", "ops_per_s", 0, False))
        metrics += [("p50 ms", "p50_ms", 2, False), ("p99 ms", "p99_ms", 2, False)]
        first = True
        for label, field, digits, _ in metrics:
            values = [get(name, field) for name in TARGET_NAMES]
            rows.append(
                [
                    scenario_id if first else "",
                    size_text if first else "",
                    label,
                    *[_fmt(v, digits) for v in values],
                    _fmt(_ratio(values[1], values[0]), 2),
                    _fmt(_ratio(values[1], values[2]), 2),
                ]
            )
            first = False
        for label, field in (("proxy cpu/op", "proxy_cpu_us_per_op"), ("weed cpu/op", "backend_cpu_us_per_op"),
                             ("client cpu/op", "client_cpu_us_per_op")):
            values = [get(name, field) for name in TARGET_NAMES]
            if label == "proxy cpu/op":
                values[0] = None
            rows.append(["", "", label, *[_cpu(v) for v in values], "", _fmt(_ratio(values[1], values[2]), 2)])
        errors = [get(name, "error_count") or 0 for name in TARGET_NAMES]
        if any(errors):
            rows.append(["", "", "errors", *[str(e) for e in errors], "", ""])
    return rows


def replicas_rows(results: dict) -> list[list[str]]:
    """The replicas section (bench/replicas.py): per scenario, replicas 1 and 2 side by side, and their ratio."""
    rows = []
    for scenario_id, data in results.get("scenarios", {}).items():
        one, two = (data["targets"].get(name, {}) for name in ("replicas1", "replicas2"))

        def pair(field: str, scale: float = 1.0, digits: int = 1, one: dict = one, two: dict = two) -> str:
            a, b = one.get(field), two.get(field)
            return f"{_fmt(None if a is None else a / scale, digits)} / {_fmt(None if b is None else b / scale, digits)}"

        rows.append([
            scenario_id,
            _fmt(one.get("mb_per_s"), 0),
            _fmt(two.get("mb_per_s"), 0),
            _fmt(data.get("ratio"), 2),
            " ".join(_fmt(r, 2) for r in data.get("ratio_rounds", [])),
            pair("p50_ms", digits=0),
            pair("proxy_cpu_us_per_op", 1000),
            pair("backend_cpu_us_per_op", 1000),
            _fmt(data.get("cpu_ratio"), 2),
            str((one.get("error_count") or 0) + (two.get("error_count") or 0)),
        ])
    return rows


REPLICAS_FLOOR = 0.8


def replicas_targets(results: dict) -> list[dict]:
    """64 MiB PUT with replicas: 2 >= 0.8 x replicas: 1, at 1 and 8 clients (and whatever else ran)."""
    scenarios = results.get("replicas", {}).get("scenarios", {})
    counts = sorted({1, 8} | {d["scenario"]["clients"] for d in scenarios.values()})
    out = []
    for clients in counts:
        data = scenarios.get(f"put64m@{clients}")
        ratio = None if data is None else data.get("ratio")
        note = "replicas: 2 MB/s / replicas: 1 MB/s (one daemon, two SeaweedFS)"
        if data is None:
            note = "not run"
        elif data["scenario"]["size"] != 64 * 2**20:
            note += f" at {data['scenario']['size'] // 2**20} MiB"
        out.append(_target(f"64 MiB PUT replicas: 2 >= 0.8 x replicas: 1 ({clients} client{'s' * (clients > 1)})",
                           ratio, ">= 0.80", None if ratio is None else ratio >= REPLICAS_FLOOR, note))
    return out


FLOOR = "twisted"


def floor_rows(results: dict[str, dict]) -> list[list[str]]:
    """The bare Twisted proxy (bench/floor.py, 4 KiB scenarios only) beside nginx and s3balance."""
    names = ("nginx", FLOOR, "s3balance")
    rows = []
    for scenario_id, data in results.items():
        targets = data["targets"]
        if FLOOR not in targets:
            continue
        rate = [targets.get(name, {}).get("ops_per_s") for name in names]
        cpu = [targets.get(name, {}).get("proxy_cpu_us_per_op") for name in names]
        rows.append(
            [
                scenario_id,
                *[_fmt(r, 0) for r in rate],
                _fmt(_ratio(rate[1], rate[0]), 2),
                _fmt(_ratio(rate[2], rate[1]), 2),
                *[_cpu(c) for c in cpu],
            ]
        )
    return rows


def table(rows: list[list[str]], header: list[str], right_from: int = 3, right_to: int = 99) -> str:
    """Columns right_from..right_to-1 (the numbers) are right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            str(c).rjust(w) if right_from <= i < right_to else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _target(name: str, measured: Optional[float], limit: str, ok: Optional[bool], note: str = "") -> dict:
    status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    return {"target": name, "measured": measured, "limit": limit, "status": status, "note": note}


def evaluate_targets(results: dict) -> list[dict]:
    out = []
    throughput = results.get("throughput", {})

    def fig(scenario_id: str, name: str, field: str) -> Optional[float]:
        return throughput.get(scenario_id, {}).get("targets", {}).get(name, {}).get(field)

    for clients in (1, 8):
        sid = f"put64m@{clients}"
        ratio = _ratio(fig(sid, "s3balance", "mb_per_s"), fig(sid, "direct", "mb_per_s"))
        out.append(_target(f"64 MiB PUT >= 0.9 x direct ({clients} client{'s' * (clients > 1)})", ratio,
                           ">= 0.90", None if ratio is None else ratio >= 0.9, "s3balance / direct MB/s"))
    out.extend(replicas_targets(results))
    for clients in (1, 8):
        sid = f"get64m@{clients}"
        ratio = _ratio(fig(sid, "s3balance", "mb_per_s"), fig(sid, "nginx", "mb_per_s"))
        out.append(_target(f"64 MiB GET >= nginx ({clients} client{'s' * (clients > 1)})", ratio,
                           ">= 1.00", None if ratio is None else ratio >= 1.0, "s3balance / nginx MB/s"))
    for op in ("put", "get"):
        sid = f"{op}4k@8"
        ratio = _ratio(fig(sid, "s3balance", "ops_per_s"), fig(sid, "nginx", "ops_per_s"))
        out.append(_target(f"4 KiB {op.upper()} ops/s >= 0.8 x nginx (8 clients)", ratio, ">= 0.80",
                           None if ratio is None else ratio >= 0.8, "s3balance / nginx ops/s"))
    for op in ("put", "get"):
        sid = f"{op}4k@1"
        a, b = fig(sid, "s3balance", "p50_ms"), fig(sid, "direct", "p50_ms")
        added = None if a is None or b is None else a - b
        out.append(_target(f"4 KiB {op.upper()} added p50 over direct <= 1 ms (1 client)", added, "<= 1.00 ms",
                           None if added is None else added <= 1.0, "s3balance p50 - direct p50, ms"))
    rss = results.get("rss")
    if rss and "peak_mib" in rss:
        full = rss["size"] >= 2**30 and rss["clients"] >= 8
        note = f"peak VmRSS, {rss['clients']} x {rss['size'] // 2**20} MiB PUT+GET"
        if not full:
            note += " (smaller than the target's 8 x 1 GiB)"
        out.append(_target("daemon RSS <= 150 MiB under 8 x 1 GiB streams", rss["peak_mib"], "<= 150 MiB",
                           (rss["peak_mib"] <= 150) if full else None, note))
    else:
        out.append(_target("daemon RSS <= 150 MiB under 8 x 1 GiB streams", None, "<= 150 MiB", None, "not run"))
    listing = results.get("listing", {})
    for db in ("sqlite", "postgres"):
        per_count = listing.get(db, {})
        by_versions: dict[int, dict[int, dict]] = {}
        for data in per_count.values():
            if "pages" in data:
                by_versions.setdefault(data.get("versions", 1), {})[data["keys"]] = data
        if not by_versions:
            reason = next((v.get("skipped") for v in per_count.values() if "skipped" in v), "not run")
            out.append(_target(f"1000-key page <= 50 ms at 10^6 keys ({db})", None, "<= 50 ms", None, reason))
            continue
        for versions, measured in sorted(by_versions.items()):
            count = max(measured)
            pages = measured[count]["pages"]
            full = [p["median_ms"] for p in pages.values() if p["entries"] >= 1000]
            worst = max(full) if full else max(p["median_ms"] for p in pages.values())
            ok = (worst <= 50) if count >= 10**6 else None
            each = "" if versions == 1 else f" x {versions} versions"
            note = f"slowest 1000-entry page (median) at {count} keys{each}"
            if count < 10**6:
                note += "; run --list-keys 1000000 for the target"
            out.append(_target(f"1000-key page <= 50 ms at 10^6 keys{each} ({db})", worst, "<= 50 ms", ok, note))
    return out


def print_report(results: dict, out: Callable[[str], None] = print) -> None:
    meta = results.get("meta", {})
    out("")
    out("=" * 100)
    out(f"s3balance benchmark  {meta.get('started', '')}  commit {meta.get('commit', '?')}  "
        f"{meta.get('cores', '?')} cores  load avg {meta.get('loadavg_start', '?')} -> {meta.get('loadavg_end', '?')}")
    out(f"clients: {meta.get('client_mode')} workers; rounds {meta.get('rounds')}; "
        f"{'QUICK (smoke) run: not a measurement' if meta.get('quick') else 'full run'}")
    if meta.get("durable_commit_ms") is not None:
        out(f"disk: one durable SQLite commit (the fsync each PUT waits for) takes {meta['durable_commit_ms']} ms (p50)")
    for note in meta.get("notes", []):
        out("NOTE: " + note)
    throughput = results.get("throughput")
    if throughput:
        out("\nThroughput and latency (lightweight SigV4 client; rates: median of rounds; latency: all requests)")
        header = ["scenario", "size", "metric", *TARGET_NAMES, "s3b/direct", "s3b/nginx"]
        out(table(throughput_rows(throughput), header))
        cores = max((t.get("client_cpu_cores", 0.0) for d in throughput.values() for t in d["targets"].values()),
                    default=0.0)
        out(f"client CPU: at most {cores:.2f} cores used by the load generator ({meta.get('client_mode')} workers, "
            f"machine has {meta.get('cores', '?')}); cpu/op = CPU time of that process (group) per request")
        if meta.get("client_mode") == "thread" and cores > 0.8:
            out("WARNING: the threaded client is near its one-core GIL limit: the client may be the bottleneck; "
                "compare with --client-mode process")
        floor = floor_rows(throughput)
        if floor:
            out("\nThe floor: a bare Twisted proxy (bench/floor.py: twisted.web + s3balance's HTTP client, "
                "no auth, no database)")
            out(table(floor, ["scenario", "nginx ops/s", f"{FLOOR} ops/s", "s3balance ops/s", "twisted/nginx",
                              "s3b/twisted", "cpu/op nginx", f"cpu/op {FLOOR}", "cpu/op s3b"], right_from=1))
    replicas = results.get("replicas")
    if replicas and replicas.get("scenarios"):
        out("\nPUT with replicas (bench/replicas.py: one daemon over two SeaweedFS on this machine, buckets with "
            "replicas: 1 and 2; MB/s: median of rounds)")
        out(table(replicas_rows(replicas), ["scenario", "r1 MB/s", "r2 MB/s", "r2/r1", "r2/r1 by round",
                                             "p50 ms r1 / r2", "proxy cpu/op ms", "weed cpu/op ms", "cpu r1/r2", "errors"],
                  right_from=1))
        out("cpu r1/r2: CPU per PUT (client + daemon + both SeaweedFS) with one copy / with two: the r2/r1 rate "
            "a machine whose cores are the limit allows")
        if replicas.get("copies"):
            out("copies per object (the daemon's database): " + ", ".join(
                f"{bucket}: " + ", ".join(f"{n} copies x {count}" for n, count in counts.items())
                for bucket, counts in replicas["copies"].items()))
    sdk = results.get("sdk")
    if sdk:
        out("\nReal SDK: boto3, 1 client, default settings (includes boto3's own overhead)")
        fields = [("put4k ops/s", "put4k_ops_per_s", 0), ("put4k p50 ms", "put4k_p50_ms", 2),
                  ("get4k ops/s", "get4k_ops_per_s", 0), ("get4k p50 ms", "get4k_p50_ms", 2),
                  ("put64m MB/s", "put64m_mb_per_s", 0), ("get64m MB/s", "get64m_mb_per_s", 0)]
        rows = []
        for label, field, digits in fields:
            values = [sdk.get(name, {}).get(field) for name in TARGET_NAMES]
            rows.append([label, "", "", *[_fmt(v, digits) for v in values], _fmt(_ratio(values[1], values[0]), 2),
                         _fmt(_ratio(values[1], values[2]), 2)])
        out(table(rows, ["metric", "", "", *TARGET_NAMES, "s3b/direct", "s3b/nginx"]))
    listing = results.get("listing")
    if listing:
        out("\nListObjectsV2 through the daemon, and ListObjectVersions at the store (list_versions, no HTTP) "
            "(median of repeats, ms; entries = keys or versions + common prefixes)")
        rows = []
        for db, per_count in listing.items():
            for label, data in per_count.items():
                if "skipped" in data:
                    rows.append([db, label, "", "skipped: " + data["skipped"][:60], "", "", "", ""])
                    continue
                for kind, field in (("v2", "pages"), ("versions", "version_pages")):
                    for page, p in data.get(field, {}).items():
                        rows.append([db, str(data.get("keys", label)), str(data.get("versions", 1)), f"{kind} {page}",
                                     _fmt(p["median_ms"], 1), _fmt(p["min_ms"], 1), str(p["entries"]),
                                     _fmt(data["insert_s"], 1)])
        out(table(rows, ["database", "keys", "versions", "page", "median ms", "min ms", "entries", "insert s"]))
    rss = results.get("rss")
    if rss and "peak_mib" in rss:
        out(f"\nDaemon memory: {rss['clients']} clients x {rss['size'] // 2**20} MiB PUT then GET: "
            f"VmRSS idle {rss['idle_mib']:.1f} MiB, peak {rss['peak_mib']:.1f} MiB (+{rss['growth_mib']:.1f}), "
            f"VmHWM {rss['hwm_mib']:.1f} MiB, {rss['mb_per_s']:.0f} MB/s aggregate"
            + (f", errors: {rss['errors'][0]}" if rss.get("errors") else ""))
    targets = results.get("targets", [])
    if targets:
        out("\nTargets")
        rows = [[t["status"], t["target"], _fmt(t["measured"], 2), t["limit"], t["note"]] for t in targets]
        out(table(rows, ["status", "target", "measured", "limit", "what"], right_from=2, right_to=3))
    out("=" * 100)


def write_json(path: str, results: dict[str, Any]) -> None:
    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    with open(path, "w") as f:
        json.dump(clean(results), f, indent=2, sort_keys=True)
        f.write("\n")
