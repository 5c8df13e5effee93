"""A parent process with the daemon's modules loaded, that forks the daemons a test starts.

The suite starts about 210 s3balance daemons (``twistd s3balance``) and
runs the aws cli about 80 times; a new interpreter spends about half a
second of CPU importing Twisted, SQLAlchemy and s3balance before a daemon
serves anything, 0.3 s importing awscli before the cli does.  The zygote
imports them once, then forks a child per daemon or cli run, which runs
``twistd`` or ``aws`` with its own arguments, environment, working
directory and files: 0.05 s of CPU to a healthy daemon instead of 0.6, and
0.17 s to an aws command instead of 0.47 (2 cores, 2026-12-05).

``python -m tests.harness.zygote SOCKET`` serves requests on a UNIX socket,
one JSON line each:

- ``{"spawn": {"program": "twistd" | "aws", "args": [...], "env": {...},
  "cwd": ..., "log": ..., "stdin": ..., "stdout": ...}}``: a child forked
  and started; answers ``{"pid": N}``;
- ``{"status": N}``: ``{"returncode": None | code}`` (a signal: minus its
  number, as ``subprocess``).

The zygote stays one thread and never installs a reactor (a child installs
its own); it reaps its children as it is asked about them.  It ends when
the test process does (it looks every second), and its children with it
(their parent death signal).  A child is its own session (``killpg``
reaches its worker processes), with stdin from ``/dev/null`` (or the file
``stdin`` names), stdout and stderr appended to its log (or stdout to the
file ``stdout`` names), and the zygote's signal dispositions, which are a
new interpreter's.  awscli is imported the first time a zygote is asked to
run it (a worker that never runs the cli does not pay for it).

``ZygoteChild`` is the test side: the parts of ``subprocess.Popen`` that
``ManagedProcess`` uses; ``run`` is ``subprocess.run`` for the aws cli.
``S3BALANCE_TEST_ZYGOTE=0`` turns it off (every daemon and cli run a new
interpreter again).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

# -- the test side ------------------------------------------------------------------


def enabled() -> bool:
    return os.environ.get("S3BALANCE_TEST_ZYGOTE", "1") != "0"


class ZygoteChild:
    """A daemon forked by the zygote, as C{ManagedProcess} drives a C{subprocess.Popen}."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self.returncode = self.zygote.status(self.pid)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(delay)
            delay = min(0.05, delay * 2)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


class Zygote:
    """The test process's zygote, started on first use (L{shared})."""

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        self.path = directory / f"zygote-{os.getpid()}.sock"
        self.path.unlink(missing_ok=True)
        from tests.harness.process import _set_parent_death_signal

        in_main_thread = threading.current_thread() is threading.main_thread()
        self.log = directory / f"zygote-{os.getpid()}.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.harness.zygote", str(self.path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if in_main_thread else None,
            )
        self._lock = threading.Lock()
        deadline = time.monotonic() + 60
        while not self.path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the zygote did not start (log: {self.log})")
            time.sleep(0.01)

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(60)
            connection.connect(str(self.path))
            connection.sendall(json.dumps(request).encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = connection.recv(65536)
                if not chunk:
                    raise RuntimeError(f"the zygote closed the connection (log: {self.log})")
                answer += chunk
        reply: dict[str, Any] = json.loads(answer)
        if "error" in reply:
            raise OSError(reply["error"])
        return reply

    def spawn(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        cwd: Optional[str],
        log: Path,
        *,
        program: str = "twistd",
        stdin: Optional[Path] = None,
        stdout: Optional[Path] = None,
    ) -> ZygoteChild:
        spec = {"program": program, "args": list(args), "env": dict(env), "cwd": cwd, "log": str(log),
                "stdin": None if stdin is None else str(stdin), "stdout": None if stdout is None else str(stdout)}
        reply = self._ask({"spawn": spec})
        return ZygoteChild(self, int(reply["pid"]))

    def status(self, pid: int) -> Optional[int]:
        if self.process.poll() is not None:
            # Closed (at exit, before the harness stops what it started):
            # its children ended with it, by their parent death signal.
            return -signal.SIGKILL
        code = self._ask({"status": pid})["returncode"]
        return None if code is None else int(code)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.path.unlink(missing_ok=True)


def run(
    program: str,
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    input: Optional[bytes],
    timeout: float,
    scratch: Path,
) -> subprocess.CompletedProcess[bytes]:
    """
    C{subprocess.run(capture_output=True)} of C{program} (C{"aws"}), forked
    by this process's zygote: its stdin the file of C{input} (or
    C{/dev/null}), its stdout and stderr files in C{scratch}.  Past
    C{timeout}, its session is killed and C{subprocess.TimeoutExpired}
    raised with what it wrote.
    """
    stdin = None
    if input is not None:
        stdin = scratch / "zygote-stdin"
        stdin.write_bytes(input)
    stdout, stderr = scratch / "zygote-stdout", scratch / "zygote-stderr"
    from tests.harness.process import harness_dir

    child = shared(harness_dir(), dict(os.environ)).spawn(
        [program, *args], env, str(cwd), stderr, program=program, stdin=stdin, stdout=stdout
    )
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()
        raise subprocess.TimeoutExpired(
            [program, *args], timeout, output=_read(stdout), stderr=_read(stderr)
        ) from None
    return subprocess.CompletedProcess([program, *args], code, _read(stdout), _read(stderr))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


_shared: dict[tuple[int, tuple[tuple[str, str], ...]], Zygote] = {}
_shared_lock = threading.Lock()


def shared(directory: Path, env: Mapping[str, str]) -> Zygote:
    """The zygote of this process for children with C{env} (one per environment, started on first use)."""
    import atexit

    key = (os.getpid(), tuple(sorted(env.items())))
    with _shared_lock:
        zygote = _shared.get(key)
        if zygote is None or zygote.process.poll() is not None:
            zygote = _shared[key] = Zygote(directory, env)
            atexit.register(zygote.close)
        return zygote


# -- the zygote ---------------------------------------------------------------------


def _preload() -> None:
    """
    Import what the daemons import, then freeze it for the garbage collector.

    Every module of s3balance, not only those the service imports at its
    top: a daemon imports most of the rest while it starts (the S3
    handlers, the checksums with awscrt, the store), and each import in a
    child is paid again in the next one.  ``gc.freeze`` leaves the preloaded
    objects out of the children's collections (the daemon's ``gc.collect``
    at start walked them all, and wrote to every page it walked).
    """
    import gc
    import importlib
    import pkgutil

    from twisted.application.service import IServiceMaker
    from twisted.plugin import getPlugins
    from twisted.scripts import twistd  # noqa: F401

    import s3balance

    for module in pkgutil.walk_packages(s3balance.__path__, "s3balance."):
        if not module.name.endswith(".__main__"):
            importlib.import_module(module.name)
    list(getPlugins(IServiceMaker))
    if "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("a preloaded module installed a reactor: the children would share it")
    if threading.active_count() != 1:
        raise RuntimeError("a preloaded module started a thread: the children would not have it")
    gc.collect()
    gc.freeze()


def _child(spec: dict[str, Any], closing: list[socket.socket]) -> None:
    """In the forked child: become the daemon (never returns)."""
    code = 1
    try:
        for sock in closing:
            sock.close()
        os.setsid()
        from tests.harness.process import _set_parent_death_signal

        _set_parent_death_signal()
        # Signal dispositions stay the zygote's, which are a new
        # interpreter's (SIGPIPE ignored: a write to a closed socket is an
        # error, not the end of the daemon); twistd sets its own handlers.
        stdin = os.open(spec.get("stdin") or os.devnull, os.O_RDONLY)
        log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        stdout = log
        if spec.get("stdout"):
            stdout = os.open(spec["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(log, 2)
        for fd in {stdin, stdout, log}:
            os.close(fd)
        os.environ.clear()
        os.environ.update(spec["env"])
        if spec["cwd"]:
            os.chdir(spec["cwd"])
        import random

        random.seed()
        sys.argv = list(spec["args"])
        try:
            if spec.get("program") == "aws":
                code = _aws()
            else:
                from twisted.scripts.twistd import run

                run()
                code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _aws() -> int:
    """What the venv's C{aws} script does, from its first line in a new interpreter."""
    if os.environ.get("LC_CTYPE", "") == "UTF-8":
        os.environ["LC_CTYPE"] = "en_US.UTF-8"
    import awscli  # type: ignore[import-untyped]
    import awscli.clidriver  # type: ignore[import-untyped]

    # What importing awscli does to the environment (awscli/__init__.py),
    # done again in the child's own environment.
    paths = []
    if "AWS_DATA_PATH" in os.environ:
        paths = [os.path.expanduser(os.path.expandvars(path)) for path in os.environ["AWS_DATA_PATH"].split(os.pathsep)]
    paths.append(os.path.join(os.path.dirname(os.path.abspath(awscli.__file__)), "data"))
    os.environ["AWS_DATA_PATH"] = os.pathsep.join(paths)

    code = awscli.clidriver.main()
    return code if isinstance(code, int) else 0


def _preload_aws() -> None:
    import gc

    if "awscli.clidriver" not in sys.modules:
        import awscli.clidriver  # noqa: F401

        if threading.active_count() != 1:
            raise RuntimeError("importing awscli started a thread: the children would not have it")
        gc.collect()
        gc.freeze()


def _returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def serve(path: str) -> None:
    parent = os.getppid()
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(64)
    listener.settimeout(1.0)
    os.rename(path + ".new", path)  # ready once it exists
    exited: dict[int, int] = {}
    while True:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            # The test process is gone: so is the zygote, and its children
            # with it (their parent death signal).
            if os.getppid() != parent:
                os._exit(0)
            continue
        connection.settimeout(None)
        with connection:
            data = b""
            while not data.endswith(b"\n"):
                chunk = connection.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            if not data:
                continue
            request = json.loads(data)
            try:
                if "spawn" in request:
                    if request["spawn"].get("program") == "aws":
                        _preload_aws()
                    pid = os.fork()
                    if pid == 0:
                        _child(request["spawn"], [listener, connection])
                    reply: dict[str, Any] = {"pid": pid}
                else:
                    pid = int(request["status"])
                    if pid not in exited:
                        try:
                            done, status = os.waitpid(pid, os.WNOHANG)
                        except ChildProcessError:
                            done, status = pid, 0  # reaped before: gone
                        if done == pid:
                            exited[pid] = _returncode(status)
                    reply = {"returncode": exited.get(pid)}
            except OSError as error:
                reply = {"error": f"{type(error).__name__}: {error}"}
            connection.sendall(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    serve(sys.argv[1])
