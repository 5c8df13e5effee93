"""
Where the daemon's time goes under small-object load: py-spy samples the
running daemon (attached by pid) while 8 clients PUT 4 KiB objects, then
GET them.  By default py-spy pauses the process for each sample (accurate
stacks, some slowdown); C{--profile-nonblocking} samples without pausing
(no slowdown, but stacks can be torn).

py-spy leaves out most idle samples but not all: samples whose innermost
frame is a wait (epoll, a thread pool's queue) are counted as idle here and
left out of the percentages.  A sample in the database thread's commit is
not idle: with SQLite it is mostly the fsync of the commit, so it is time
the PUT waits, not CPU.  The CPU time each thread really used over the
window is read from /proc/<pid>/task/<tid>/stat.

py-spy's "raw" output is one line per distinct stack, frames root first,
separated by C{;}, and the sample count at the end.  From it we print:

- the threads' shares (the reactor thread vs the database pool),
- the top frames by self time (where the CPU is spent),
- the top frames by total time (which calls are expensive, children included),
- the time by package (twisted, s3balance.*, sqlalchemy, botocore, ...).

py-spy: C{.venv/bin/pip install py-spy} (add it to requirements/test.txt).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from bench.environment import CLOCK_TICKS, Target
from bench.throughput import Scenario, measure_round, prepare_gets
from bench.workers import WorkerPool

INSTALL_HINT = "py-spy is missing: run `.venv/bin/pip install py-spy` (and add py-spy to requirements/test.txt)"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def find_py_spy() -> Optional[str]:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


def frame_parts(frame: str) -> tuple[str, str]:
    """-> (function, file) of a py-spy frame 'func (path/file.py:123)'."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return match.group("func"), match.group("file")


def short_file(path: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return path


def package_of(path: str) -> str:
    path = short_file(path)
    if path.startswith("s3balance/"):
        parts = path.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else parts[0] + "/" + parts[1].removesuffix(".py")
    top = path.split("/", 1)[0]
    if top.endswith(".py") or top.startswith(".") or re.match(r"^\d", top):
        return "stdlib"
    return top


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        stacks.append((head.split(";"), int(count)))
    return stacks


# Innermost frames that mean "waiting for work", not working.
IDLE_LEAVES = (
    ("doPoll", "epollreactor.py"),
    ("doPoll", "pollreactor.py"),
    ("doSelect", "selectreactor.py"),
    ("wait", "threading.py"),
    ("get", "queue.py"),
)


def is_idle(frames: list[str]) -> bool:
    func, file = frame_parts(frames[-1])
    name = func.rsplit(".", 1)[-1]
    base = file.rsplit("/", 1)[-1].split(":", 1)[0]
    return any(name == f and base == b for f, b in IDLE_LEAVES)


def analyse(stacks: list[tuple[list[str], int]], top: int = 20) -> dict:
    idle = sum(count for frames, count in stacks if len(frames) > 1 and is_idle(frames))
    stacks = [(frames, count) for frames, count in stacks if not (len(frames) > 1 and is_idle(frames))]
    total = sum(count for _, count in stacks) or 1
    threads: Counter = Counter()
    self_time: Counter = Counter()
    inclusive: Counter = Counter()
    ours: Counter = Counter()
    calls_out: Counter = Counter()
    packages: Counter = Counter()
    for frames, count in stacks:
        if frames and frames[0].startswith(("thread ", "process ")):
            label = frames[0]
            frames = frames[1:]
            threads[label] += count
        if not frames:
            continue
        func, file = frame_parts(frames[-1])
        self_time[f"{func} ({short_file(file)})"] += count
        packages[package_of(file)] += count
        for frame in set(frames):
            func, file = frame_parts(frame)
            name = f"{func} ({short_file(file)})"
            inclusive[name] += count
            if short_file(file).startswith("s3balance/"):
                ours[name] += count
        # The call out of our code into a library (botocore, sqlalchemy, twisted, ...).
        deepest = max((i for i, f in enumerate(frames) if short_file(frame_parts(f)[1]).startswith("s3balance/")),
                      default=None)
        if deepest is not None and deepest + 1 < len(frames):
            caller, callee = frame_parts(frames[deepest])[0], frame_parts(frames[deepest + 1])
            calls_out[f"{caller} -> {callee[0]} ({package_of(callee[1])})"] += count
    pct = lambda n: round(100.0 * n / total, 1)  # noqa: E731
    return {
        "samples": total,
        "idle_samples_dropped": idle,
        "threads": [(name, pct(n)) for name, n in threads.most_common(6)],
        "self": [(name, pct(n)) for name, n in self_time.most_common(top)],
        "inclusive": [(name, pct(n)) for name, n in inclusive.most_common(top + 10)],
        "ours": [(name, pct(n)) for name, n in ours.most_common(top + 10)],
        "calls_out": [(name, pct(n)) for name, n in calls_out.most_common(top)],
        "packages": [(name, pct(n)) for name, n in packages.most_common(15)],
    }


def print_profile(label: str, analysis: dict, out: Callable[[str], None] = print, top: int = 20) -> None:
    out(f"\n--- profile: {label} ({analysis['samples']} busy samples, {analysis.get('idle_samples_dropped', 0)} idle "
        "left out; % of busy samples) ---")
    if analysis.get("ops_per_s_while_profiled"):
        out(f"load while profiled: {analysis['ops_per_s_while_profiled']:.0f} ops/s")
    if analysis.get("thread_cpu"):
        out("CPU per thread over the window (from /proc; us per request):")
        for name, seconds, per_op in analysis["thread_cpu"]:
            out(f"  {name:<40} {seconds:6.2f} s CPU  {per_op:7.0f} us/op")
    if analysis["threads"]:
        out("samples by thread: " + ", ".join(f"{name} {p}%" for name, p in analysis["threads"]))
    out("by package (self time):")
    for name, p in analysis["packages"]:
        out(f"  {p:5.1f}%  {name}")
    out("top frames by self time:")
    for name, p in analysis["self"][:top]:
        out(f"  {p:5.1f}%  {name}")
    out("s3balance functions by total time (with callees):")
    for name, p in analysis.get("ours", [])[:top]:
        out(f"  {p:5.1f}%  {name}")
    out("calls from s3balance into libraries (total time of the call):")
    for name, p in analysis.get("calls_out", [])[:top]:
        out(f"  {p:5.1f}%  {name}")


def task_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of a process, by thread id."""
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def thread_names(stacks: list[tuple[list[str], int]]) -> dict[int, str]:
    """py-spy's 'thread (TID): NAME' root frames -> {tid: name}."""
    names = {}
    for frames, _ in stacks:
        match = re.match(r"^thread \((\d+)\)(?::\s*(.*))?$", frames[0]) if frames else None
        if match:
            names[int(match.group(1))] = match.group(2) or f"thread {match.group(1)}"
    return names


def _loads(pool: WorkerPool, target: Target, size: int, clients: int, seconds: float):
    """The 4 KiB PUT and GET loads, in turn: (op, scenario), the GET's objects written first."""
    for op in ("put", "get"):
        scenario = Scenario(f"{op}4k", op, size, clients, seconds)
        if op == "get":
            prepare_gets(pool, [target], scenario, 50)
        yield op, scenario


def run(
    pool: WorkerPool,
    target: Target,
    seconds: float,
    outdir: Path,
    size: int = 4096,
    clients: int = 8,
    rate: int = 100,
    nonblocking: bool = False,
    gil: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    py_spy = find_py_spy()
    if py_spy is None:
        log("  " + INSTALL_HINT)
        return {"skipped": INSTALL_HINT}
    pid = target.proxy_pids()[0]
    outdir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for op, scenario in _loads(pool, target, size, clients, seconds):
        raw = outdir / f"profile-{op}4k.txt"
        raw.unlink(missing_ok=True)
        command = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--duration", str(int(seconds + 1)),
                   "--format", "raw", "--output", str(raw), "--threads"]
        if nonblocking:
            command.append("--nonblocking")
        if gil:
            # Only the thread holding the GIL: a thread waiting to take it back
            # (after a syscall) is not charged for the other thread's work.
            command.append("--gil")
        spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.5)  # py-spy attaches
        cpu_before = task_cpu(pid)
        measured = measure_round(pool, target, scenario, 0, 50)
        cpu_after = task_cpu(pid)
        try:
            output, _ = spy.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            output, _ = spy.communicate()
        if spy.returncode != 0 or not raw.exists():
            text = output.decode("utf-8", "replace").strip()
            log(f"  py-spy failed ({spy.returncode}): {text[-500:]}")
            results[f"{op}4k"] = {"error": text[-2000:]}
            continue
        stacks = parse_raw(raw)
        analysis = analyse(stacks)
        names = thread_names(stacks)
        ops = max(1, measured["ops"])
        used = sorted(
            ((names.get(tid, f"thread {tid}"), cpu_after[tid] - cpu_before.get(tid, 0.0)) for tid in cpu_after),
            key=lambda item: -item[1],
        )
        analysis["thread_cpu"] = [(name, round(sec, 3), sec / ops * 1e6) for name, sec in used if sec > 0.005]
        analysis["raw"] = str(raw)
        analysis["ops_per_s_while_profiled"] = measured["ops_per_s"]
        results[f"{op}4k"] = analysis
        log(f"  profiled {op}4k@{clients} for {seconds:.0f} s at {measured['ops_per_s']:.0f} ops/s "
            f"({'non-blocking' if nonblocking else 'blocking'} py-spy, {rate} Hz) -> {raw}")
    return results


def syscalls(
    pool: WorkerPool,
    target: Target,
    seconds: float,
    outdir: Path,
    size: int = 4096,
    clients: int = 8,
    log: Callable[[str], None] = print,
) -> dict:
    """
    System calls per request of the daemon (all threads) under 4 KiB PUT
    and GET load, counted by C{strace -c -f}.  strace slows every call, so
    the rate under it means nothing; the counts per request do.
    """
    strace = shutil.which("strace")
    if strace is None:
        log("  strace is not installed (apt-get install strace)")
        return {"skipped": "strace is not installed"}
    pid = target.proxy_pids()[0]
    outdir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for op, scenario in _loads(pool, target, size, clients, seconds):
        table = outdir / f"syscalls-{op}4k.txt"
        tracer = subprocess.Popen([strace, "-c", "-f", "-o", str(table), "-p", str(pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # strace attaches to every thread
        measured = measure_round(pool, target, scenario, 0, 50)
        tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
        ops = max(1, measured["ops"])
        counts = {}
        for line in table.read_text().splitlines() if table.exists() else []:
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(fields) >= 5 and fields[0].replace(".", "").isdigit() and fields[-1] != "total":
                counts[fields[-1]] = int(fields[3])
        results[f"{op}4k"] = {
            "ops": measured["ops"],
            "per_op": sorted(((name, calls / ops) for name, calls in counts.items()), key=lambda item: -item[1]),
        }
        log(f"  counted system calls of {measured['ops']} {op}4k requests -> {table}")
    return results


def print_syscalls(results: dict, out: Callable[[str], None] = print, top: int = 14) -> None:
    for label, counted in results.items():
        if "per_op" not in counted:
            continue
        total = sum(per_op for _, per_op in counted["per_op"])
        out(f"\n--- system calls per {label} request @8 clients ({counted['ops']} requests; strace -c -f): "
            f"{total:.1f} in all ---")
        out("  " + ", ".join(f"{name} {per_op:.2f}" for name, per_op in counted["per_op"][:top]))
