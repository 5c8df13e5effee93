"""Child processes for integration tests: start, wait until ready, stop.

Every child runs in its own process group with its output in a log file under
one temporary directory per test process (``harness_dir()``).  Children never
outlive the test run: an ``atexit`` hook stops every process group still
running, and on Linux a child started from the main thread also gets
``PR_SET_PDEATHSIG`` so it is killed even when the test runner itself is
SIGKILLed.

These helpers block (they poll with a deadline, never a fixed sleep).  Call them
from a test's setUp or body, not from code running inside the reactor's
callbacks while the reactor must keep serving something.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "HarnessError",
    "ManagedProcess",
    "free_port",
    "free_ports",
    "reserve_ports",
    "harness_dir",
    "venv_bin",
    "wait_for_http",
    "wait_for_port",
]

_POLL_INTERVAL = 0.02
_MAX_POLL_INTERVAL = 0.1
_LOG_TAIL_BYTES = 4000
_PR_SET_PDEATHSIG = 1

_lock = threading.RLock()
_harness_dir: Path | None = None
_running: set[ManagedProcess] = set()


class HarnessError(RuntimeError):
    """A test dependency did not start, answer or stop as expected."""


def harness_dir() -> Path:
    """The temporary directory for this test process's logs and data.

    ``$S3BALANCE_HARNESS_DIR`` chooses the parent directory (default: the
    system temp dir).  Logs are kept after the run so a failure can be read;
    data directories are removed by their owners at exit.
    """
    global _harness_dir
    with _lock:
        if _harness_dir is None:
            parent = os.environ.get("S3BALANCE_HARNESS_DIR") or None
            if parent:
                os.makedirs(parent, exist_ok=True)
            _harness_dir = Path(tempfile.mkdtemp(prefix="s3balance-harness-", dir=parent))
        return _harness_dir


def venv_bin(name: str) -> str:
    """The path of console script ``name`` next to the running interpreter.

    The tests run with ``.venv/bin/python``; its console scripts (``weed``,
    ``moto_server``, ``aws``, ``s3cmd``) sit beside it.  Falls back to ``$PATH``.
    """
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise HarnessError(f"{name!r} not found next to {sys.executable} nor on $PATH; run `make venv`")
    return found


# Ports are picked below the kernel's ephemeral range (32768- on Linux), where
# no outgoing connection can take one between our choice and the server's
# bind, and reserved across processes: several trial workers, or test runs of
# two checkouts on one machine, choose at the same time, and a port that was
# merely free when one of them looked could be handed to another before
# either bound it.  The reservation is a POSIX record lock on byte ``port`` of
# one file in the temp dir (one descriptor for any number of ports, and the
# kernel drops the locks when the process ends, even on SIGKILL).  It lasts
# the test process's life: a restarted server gets its port back, and a port
# kept unbound on purpose (a dead backend's endpoint) stays unbound.
_PORT_RANGE = (10000, 32768)
_PORT_LOCK_FILE = "s3balance-ports.lock"

_port_lock = threading.Lock()
_reserved_ports: set[int] = set()
_port_lock_fd: int | None = None


def _port_lock_descriptor() -> int | None:
    """The open lock file (None where it cannot be made: then only this process is coordinated)."""
    global _port_lock_fd
    if _port_lock_fd is None:
        path = Path(tempfile.gettempdir()) / _PORT_LOCK_FILE
        try:
            _port_lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return None
        try:
            # Other users' test runs lock the same file.
            os.fchmod(_port_lock_fd, 0o666)
        except OSError:
            pass
    return _port_lock_fd


def _reserve(port: int, host: str) -> bool:
    """Reserve ``port`` for this process if no process holds it and nothing listens on it."""
    # Called with _port_lock held.  A process's own record locks never
    # conflict with each other, so its reservations are also kept in a set.
    if port in _reserved_ports:
        return False
    fd = _port_lock_descriptor()
    if fd is not None:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
        except OSError:
            return False
    if not port_is_free(port, host):
        if fd is not None:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, port)
        return False
    _reserved_ports.add(port)
    return True


def _release(port: int) -> None:
    """Give back a reservation (called with _port_lock held)."""
    _reserved_ports.discard(port)
    fd = _port_lock_descriptor()
    if fd is not None:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, port)


def reserve_ports(ports: Sequence[int], host: str = "127.0.0.1") -> bool:
    """Reserve all of ``ports`` for this process, or none of them; true when all were."""
    with _port_lock:
        taken: list[int] = []
        for port in ports:
            if not _reserve(port, host):
                for held in taken:
                    _release(held)
                return False
            taken.append(port)
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on, reserved for this process."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports, reserved for this process (see ``_PORT_RANGE``)."""
    rng = random.Random()
    chosen: list[int] = []
    with _port_lock:
        for _ in range(count * 200):
            if len(chosen) == count:
                return chosen
            port = rng.randrange(*_PORT_RANGE)
            if _reserve(port, host):
                chosen.append(port)
        if len(chosen) == count:
            return chosen
        for port in chosen:
            _release(port)
    raise HarnessError(f"no {count} free ports in {_PORT_RANGE[0]}-{_PORT_RANGE[1] - 1}")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a socket can bind ``host:port`` now (says nothing of other processes' reservations)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def _set_parent_death_signal() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGKILL the
    # child when the thread that forked it exits.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError as e:
        return f"<cannot read log: {e}>"
    text = data.decode("utf-8", "replace")
    return ("...\n" if size > limit else "") + text


class ManagedProcess:
    """One child process with its output in ``log_path``.

    >>> p = ManagedProcess("moto", ["moto_server", "-p", "5000"])
    >>> p.start(); wait_for_port("127.0.0.1", 5000, process=p)
    >>> p.stop()
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.args = [str(a) for a in args]
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        if log_path is None:
            log_path = harness_dir() / f"{name}.log"
        self.log_path = Path(log_path)
        self._popen: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} log={self.log_path}>"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def start(self) -> None:
        """Start the child; its output is appended to ``log_path``."""
        if self.running:
            raise HarnessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== start #{self._starts}: {' '.join(self.args)}\n".encode())
            log.flush()
            in_main_thread = threading.current_thread() is threading.main_thread()
            if self._forked_by_zygote():
                from tests.harness import zygote

                env = self.env if self.env is not None else dict(os.environ)
                cwd = None if self.cwd is None else str(self.cwd)
                self._popen = zygote.shared(harness_dir(), env).spawn(  # type: ignore[assignment]
                    self.args, env, cwd, self.log_path
                )
                with _lock:
                    _running.add(self)
                return
            try:
                self._popen = subprocess.Popen(
                    self.args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=_set_parent_death_signal if in_main_thread else None,
                )
            except OSError as e:
                raise HarnessError(f"cannot start {self.name} ({self.args[0]}): {e}") from e
        with _lock:
            _running.add(self)

    def _forked_by_zygote(self) -> bool:
        """An s3balance daemon (C{twistd}) is forked by the zygote (L{tests.harness.zygote})."""
        from tests.harness import zygote

        return zygote.enabled() and self.args[0] == venv_bin("twistd")

    def check_alive(self) -> None:
        """Raise ``HarnessError`` with the log's tail if the child has exited."""
        if self._popen is None:
            raise HarnessError(f"{self.name} was never started")
        code = self._popen.poll()
        if code is not None:
            raise self.error(f"{self.name} exited with status {code}")

    def error(self, message: str) -> HarnessError:
        """A ``HarnessError`` carrying ``message``, the log path and its tail."""
        return HarnessError(f"{message}\n--- log: {self.log_path} (last lines) ---\n{_tail(self.log_path)}")

    def _signal_group(self, sig: int) -> None:
        assert self._popen is not None
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            self._popen.send_signal(sig)

    def _wait(self, timeout: float) -> bool:
        assert self._popen is not None
        try:
            self._popen.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return False
        return True

    def terminate(self) -> None:
        """Send SIGTERM to the process group without waiting."""
        if self.running:
            self._signal_group(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL it if it outlives ``timeout``."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            if not self._wait(timeout):
                self._signal_group(signal.SIGKILL)
                self._wait(10.0)
        # The leader may be gone while others in its group live on.
        self._signal_group(signal.SIGKILL)
        with _lock:
            _running.discard(self)
        return self._popen.returncode

    def kill(self) -> int | None:
        """SIGKILL the process group at once (for fault-injection tests)."""
        if self._popen is None:
            return None
        self._signal_group(signal.SIGKILL)
        self._wait(10.0)
        with _lock:
            _running.discard(self)
        return self._popen.returncode


def stop_all(processes: Iterable[ManagedProcess], timeout: float = 10.0) -> None:
    """Stop several children in parallel: SIGTERM them all, then wait for each."""
    processes = list(processes)
    for p in processes:
        p.terminate()
    deadline = time.monotonic() + timeout
    for p in processes:
        p.stop(timeout=deadline - time.monotonic())


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout: float = 30.0,
    process: ManagedProcess | None = None,
) -> None:
    """Poll until a TCP connection to ``host:port`` succeeds.

    With ``process``, fail at once (showing its log) if it exits while waiting.
    """

    def attempt() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False

    _poll(attempt, f"{host}:{port} to accept connections", timeout, process)


def wait_for_http(
    url: str,
    *,
    timeout: float = 30.0,
    process: ManagedProcess | None = None,
    accept: Callable[[int], bool] = lambda status: True,
) -> int:
    """Poll until ``url`` answers an HTTP GET with a status ``accept`` likes.

    Any status counts by default (an S3 server answering 403 is up).  Returns
    the status.
    """
    status: list[int] = []

    def attempt() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                code = response.status
        except urllib.error.HTTPError as e:
            code = e.code
        except (OSError, ValueError):
            return False
        status[:] = [code]
        return accept(code)

    _poll(attempt, f"{url} to answer over HTTP", timeout, process)
    return status[0]


def poll_until(
    condition: Callable[[], bool],
    what: str,
    *,
    timeout: float = 30.0,
    process: ManagedProcess | None = None,
) -> None:
    """Call ``condition`` until it returns true or ``timeout`` seconds pass."""
    _poll(condition, what, timeout, process)


def _poll(
    attempt: Callable[[], bool],
    what: str,
    timeout: float,
    process: ManagedProcess | None,
) -> None:
    deadline = time.monotonic() + timeout
    interval = _POLL_INTERVAL
    while True:
        if process is not None:
            process.check_alive()
        if attempt():
            return
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:.1f}s waiting for {what}"
            raise process.error(message) if process is not None else HarnessError(message)
        time.sleep(interval)
        interval = min(interval * 1.5, _MAX_POLL_INTERVAL)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a directory tree, ignoring one that is already gone."""
    shutil.rmtree(path, ignore_errors=True)


@atexit.register
def _stop_everything() -> None:
    with _lock:
        leftovers = list(_running)
    stop_all(leftovers, timeout=5.0)


_in_process_lock = threading.Lock()


def run_in_process(main: Callable[[list[str]], int | None], argv: Sequence[str], cwd: str) -> tuple[int, str, str]:
    """
    A command line's C{main(argv)} run in this process as if it were its own:
    in C{cwd}, with file descriptors 1 and 2 (and so C{sys.stdout} and
    C{sys.stderr}, and any stream bound to them earlier) going to files
    read back after; -> (exit status, stdout, stderr).  An exception the
    command lets out is its traceback on stderr and status 1, as the
    interpreter would make it.

    For the admin commands (fsck, rebuild, import), which a test runs
    dozens of times: a new interpreter loads Twisted, SQLAlchemy and
    botocore again each time, about a second of CPU a run.  One at a time
    per process (the descriptors and the working directory are the
    process's); a command that blocks a reactor this process runs must not
    need it.
    """
    import io
    import traceback

    with _in_process_lock, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        here = os.getcwd()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            os.chdir(cwd)
            try:
                status = main(list(argv))
                code = 0 if status is None else int(status)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                if exit_.code is not None and not isinstance(exit_.code, int):
                    sys.stderr.write(f"{exit_.code}\n")
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.chdir(here)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        texts = []
        for stream in (out, err):
            stream.seek(0)
            texts.append(io.TextIOWrapper(stream, encoding="utf-8", errors="replace").read())
        return code, texts[0], texts[1]
