"""
Daemons for the client and authentication integration tests: like
L{tests.daemon.start_gateway}, but with the virtual buckets a test names,
optionally serving TLS (readiness is then probed over https), plus the
helpers those tests share: a boto3 client that can skip certificate checks
and go through an HTTP proxy, S3 error parsing, leak checks, and
module-level lazy singletons so each test module starts each daemon once.
"""

from __future__ import annotations

import atexit
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, Optional, TypeVar

from tests.daemon import (
    ACCESS_KEY,
    SECRET_KEY,
    Daemon,
    Gateway,
    backend_entry,
    base_config,
    database_counts,
    poll,
)
from tests.harness import harness_dir, shared_seaweedfs_pair, unique_bucket_name
from tests.harness.clients import boto3_client
from tests.harness.trialrun import keep_module_together, on_test_start
from tests.tlsfixture import self_signed_certificate

_T = TypeVar("_T")

NOTHING = {"objects": 0, "write_intents": 0, "deletion_queue": 0}


def insecure_context() -> ssl.SSLContext:
    """An SSL context that accepts the self-signed test certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RunningGateway(Gateway):
    """A running daemon with its backends; C{endpoint} is https when it serves TLS."""

    def __init__(self, daemon: Daemon, backends: list, real_buckets: list[str], tls: bool) -> None:
        super().__init__(daemon, backends, real_buckets)
        self.tls = tls

    @property
    def port(self) -> int:
        return self.daemon.port

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, **kwargs: Any):
        return s3_client(self.endpoint, access_key, secret_key, **kwargs)

    def assert_nothing_left(self, bucket: str, timeout: float = 15.0) -> None:
        assert_nothing_left(self, bucket, timeout)


def assert_nothing_left(gateway: Gateway, bucket: str, timeout: float = 15.0) -> None:
    """
    No row of C{bucket} in the daemon's store (object, write intent, queued
    deletion) and no object under its prefix on any backend, once the
    deletion worker had C{timeout} seconds to catch up.
    """
    poll(
        lambda: database_counts(gateway.daemon, bucket) == NOTHING,
        timeout=timeout,
        message=f"rows left for {bucket}: {database_counts(gateway.daemon, bucket)}",
    )
    poll(
        lambda: not any(gateway.backend_keys(f"{bucket}/").values()),
        timeout=timeout,
        message=f"backend objects left for {bucket}: {gateway.backend_keys(bucket + '/')}",
    )


def launch(
    name: str,
    virtual: Sequence[str] = ("vb-default",),
    *,
    tls: bool = False,
    timeout: float = 30.0,
    bucket_keys: Optional[dict[str, dict]] = None,
    **sections: Any,
) -> RunningGateway:
    """
    A new daemon over the two shared SeaweedFS servers (fresh real buckets),
    with the virtual buckets C{virtual} (and the keys C{bucket_keys} gives
    some of them: an owner, an ACL, a policy...) and the config C{sections}
    merged over L{tests.daemon.base_config}.  With C{tls}, a self-signed
    certificate is made and the daemon serves https only.
    """
    first, second = shared_seaweedfs_pair()
    real = [unique_bucket_name("real"), unique_bucket_name("real")]
    first.create_bucket(real[0])
    second.create_bucket(real[1])
    workdir = Path(harness_dir()) / f"{name}-{time.monotonic_ns()}"
    workdir.mkdir(parents=True, exist_ok=True)
    if tls:
        cert, key = self_signed_certificate(workdir)
        server = dict(sections.pop("server", {}))
        server.update(tls_cert=str(cert), tls_key=str(key))
        sections["server"] = server
    config = base_config(
        [backend_entry(first, real[0]), backend_entry(second, real[1])],
        list(virtual),
        workdir,
        **sections,
    )
    for entry in config["buckets"]:
        entry.update((bucket_keys or {}).get(entry["name"], {}))
    daemon = Daemon(config, name=name)
    gateway = RunningGateway(daemon, [first, second], real, tls)
    daemon.process.start()
    try:
        wait_until_serving(gateway, timeout)
    except BaseException:
        daemon.kill()
        raise
    return gateway


def wait_until_serving(gateway: RunningGateway, timeout: float) -> None:
    """Poll C{/health} (over https for a TLS daemon) until it answers."""
    context = insecure_context() if gateway.tls else None
    url = f"{gateway.endpoint}/health"
    deadline = time.monotonic() + timeout
    while True:
        gateway.daemon.process.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2.0, context=context):
                return
        except urllib.error.HTTPError:
            return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise gateway.daemon.process.error(f"the daemon did not answer on {url} within {timeout:.0f}s")
        time.sleep(0.05)


def _calling_test_module() -> str:
    """The name of the innermost C{tests.test_*} module on the stack ("" if none)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("tests.test_"):
            return name
        frame = frame.f_back  # type: ignore[assignment]
    return ""


class Lazy(Generic[_T]):
    """
    A value made on first use and kept for the process (a daemon shared by
    one module's tests).  A factory that failed is not retried: every later
    use raises the same error at once instead of waiting for another timeout.

    The module that makes a L{Lazy} has its tests run by one worker, one
    after the other (L{tests.harness.trialrun.keep_module_together}), so the
    value is made once in the whole run.  With a C{stop}, the value is also
    stopped when a test of another module starts in a worker of that runner,
    or elsewhere makes a L{Lazy} value: a test process that moved on to
    another module never runs the earlier one's tests again, and its idle
    daemons would only take CPU from the others (were it used again, it
    would be made anew).
    """

    _live: list[Lazy[Any]] = []
    _live_lock = threading.Lock()

    def __init__(self, factory: Callable[[], _T], stop: Optional[Callable[[_T], Any]] = None) -> None:
        self._factory = factory
        self._stop = stop
        self._value: Optional[_T] = None
        self._error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._module = ""
        if stop is not None:
            atexit.register(self.close)
        # One worker runs all of the module's tests, so it makes the value once.
        self._home = _calling_test_module()
        self._users = {self._home} if self._home else set()
        if self._home:
            keep_module_together(self._home)

    def __call__(self) -> _T:
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._value is not None:
                return self._value
        module = _calling_test_module()
        if module:
            Lazy._close_all_but(module)
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._value is None:
                try:
                    self._value = self._factory()
                except BaseException as error:
                    self._error = error
                    raise
                self._module = module
                if self._stop is not None:
                    with Lazy._live_lock:
                        Lazy._live.append(self)
            return self._value

    def share_with(self, module: str) -> None:
        """
        The tests of C{module} use the value too: one worker runs them with
        the tests of the module that made this L{Lazy}.
        """
        self._users.add(module)
        keep_module_together(module, group=self._home or module)

    def close(self) -> None:
        """Stop the value, if made (the next use makes a new one)."""
        with self._lock:
            value, self._value = self._value, None
            with Lazy._live_lock:
                if self in Lazy._live:
                    Lazy._live.remove(self)
        if value is not None and self._stop is not None:
            self._stop(value)

    def _used_by(self, module: str) -> bool:
        return module in self._users or module == self._module

    @classmethod
    def _close_all_but(cls, module: str) -> None:
        with cls._live_lock:
            others = [lazy for lazy in cls._live if lazy._module and not lazy._used_by(module)]
        for lazy in others:
            lazy.close()


# A worker of the parallel runner runs each module's tests together: once a
# test of another module starts, the earlier module's daemons are idle for good.
on_test_start(Lazy._close_all_but)


def lazy_gateway(name: str, virtual: Sequence[str] = ("vb-default",), **kwargs: Any) -> Lazy[RunningGateway]:
    """A L{Lazy} L{launch}, stopped when the test process exits."""
    return Lazy(lambda: launch(name, virtual, **kwargs), stop=lambda gateway: gateway.daemon.stop())


def s3_client(
    endpoint: str,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    *,
    addressing_style: Literal["path", "virtual"] = "path",
    checksums: Literal["default", "when_required"] = "default",
    verify: bool = True,
    region: str = "us-east-1",
    **config: Any,
):
    """
    A boto3 S3 client like L{tests.harness.boto3_client} (isolated from the
    user's AWS config, no retries), that may also skip certificate checks
    (C{verify=False}) and take any C{botocore.config.Config} option (e.g.
    C{proxies}).
    """
    return boto3_client(
        endpoint,
        access_key,
        secret_key,
        addressing_style=addressing_style,
        region=region,
        checksums=checksums,
        verify=verify,
        **config,
    )


def error_code(error: Exception) -> str:
    """The S3 error code of a botocore C{ClientError}."""
    return error.response["Error"]["Code"]  # type: ignore[attr-defined]


def s3_error(body: bytes) -> tuple[str, str]:
    """(Code, Message) of an S3 XML error document."""
    root = ET.fromstring(body)
    return root.findtext("Code") or "", root.findtext("Message") or ""


def http(
    method: str,
    url: str,
    body: Optional[bytes] = None,
    headers: Optional[dict] = None,
    context: Optional[ssl.SSLContext] = None,
) -> tuple[int, dict, bytes]:
    """One request with urllib: (status, headers with lower-case names, body); errors are answers too."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()
