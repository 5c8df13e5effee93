"""Real S3 clients pointed at an endpoint: aws cli, s3cmd, rclone, minio, boto3.

Each ``run_*`` helper runs the client as a subprocess with a private, temporary
configuration (the user's ``~/.aws``, ``~/.s3cfg`` and rclone config never
interfere) and returns a ``ClientResult(code, stdout, stderr)``; with
``check=True`` (the default) a non-zero exit raises ``ClientError`` showing the
command and its output.

These calls block.  When the server under test runs in the test's own reactor
(the gateway started in-process), run them in a thread so the reactor keeps
serving: ``result = yield in_thread(run_aws, [...], endpoint, ak, sk)``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar
from urllib.parse import urlsplit

from . import zygote
from .process import harness_dir, venv_bin

__all__ = [
    "ClientError",
    "ClientResult",
    "boto3_client",
    "in_thread",
    "minio_client",
    "run_aws",
    "run_rclone",
    "run_s3cmd",
]

AddressingStyle = Literal["path", "virtual"]
DEFAULT_TIMEOUT = 120.0

_T = TypeVar("_T")


class ClientResult(NamedTuple):
    code: int
    stdout: str
    stderr: str


class ClientError(AssertionError):
    """A client exited non-zero (or timed out); the message shows its output.

    An ``AssertionError`` so trial reports it as a test failure, not an error.
    """

    def __init__(self, command: Sequence[str], result: ClientResult, note: str = "") -> None:
        self.command = list(command)
        self.result = result
        super().__init__(
            f"{note or 'client failed'}: exit {result.code}: {' '.join(self.command)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )


def in_thread(function: Callable[..., _T], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call in the reactor's thread pool; returns a Deferred."""
    from twisted.internet.threads import deferToThread

    return deferToThread(function, *args, **kwargs)


def _host_port(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    if not parts.hostname:
        raise ValueError(f"endpoint {endpoint!r} has no host")
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.hostname}:{parts.port or default}"


def _isolated_env(home: Path, env_extra: Mapping[str, str] | None) -> dict[str, str]:
    """The environment for a client: ours, less anything AWS/rclone, HOME private."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "RCLONE_", "S3CMD_"))
        and k not in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    }
    env["HOME"] = str(home)
    env["NO_PROXY"] = env["no_proxy"] = "*"
    if env_extra:
        env.update(env_extra)
    return env


def _run(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    timeout: float,
    check: bool,
    input: bytes | None,
) -> ClientResult:
    try:
        if command[0] == venv_bin("aws") and zygote.enabled():
            with _scratch("aws-run") as scratch:
                done = zygote.run("aws", command[1:], env, cwd, input=input, timeout=timeout, scratch=Path(scratch))
        else:
            done = subprocess.run(
                list(command),
                env=dict(env),
                cwd=cwd,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
    except subprocess.TimeoutExpired as e:
        result = ClientResult(
            -1,
            (e.stdout or b"").decode("utf-8", "replace"),
            (e.stderr or b"").decode("utf-8", "replace"),
        )
        raise ClientError(command, result, f"timed out after {timeout:.0f}s") from None
    result = ClientResult(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )
    if check and result.code != 0:
        raise ClientError(command, result)
    return result


def _scratch(tool: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"{tool}-", dir=harness_dir())


def run_aws(
    args: Sequence[str],
    endpoint: str,
    access_key: str,
    secret_key: str,
    env_extra: Mapping[str, str] | None = None,
    *,
    addressing_style: AddressingStyle = "path",
    region: str = "us-east-1",
    config: Mapping[str, str] | None = None,
    s3_config: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> ClientResult:
    """Run the venv's ``aws`` with ``args`` (e.g. ``["s3", "cp", src, dst]``).

    ``--endpoint-url`` is added.  ``config`` adds keys to the profile (e.g.
    ``{"request_checksum_calculation": "when_required"}``), ``s3_config`` to its
    ``s3 =`` block (e.g. ``{"multipart_threshold": "5MB"}``).
    """
    with _scratch("aws") as scratch:
        home = Path(scratch)
        lines = ["[default]", f"region = {region}", "retry_mode = standard", "max_attempts = 1"]
        lines += [f"{k} = {v}" for k, v in (config or {}).items()]
        lines += ["s3 =", f"  addressing_style = {addressing_style}"]
        lines += [f"  {k} = {v}" for k, v in (s3_config or {}).items()]
        config_file = home / "aws-config"
        config_file.write_text("\n".join(lines) + "\n")
        credentials_file = home / "aws-credentials"
        credentials_file.write_text("")
        env = _isolated_env(home, None)
        env.update(
            AWS_CONFIG_FILE=str(config_file),
            AWS_SHARED_CREDENTIALS_FILE=str(credentials_file),
            AWS_ACCESS_KEY_ID=access_key,
            AWS_SECRET_ACCESS_KEY=secret_key,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_PAGER="",
        )
        env.update(env_extra or {})
        command = [venv_bin("aws"), "--endpoint-url", endpoint, *args]
        return _run(command, env, Path(cwd) if cwd else home, timeout=timeout, check=check, input=input)


def run_s3cmd(
    args: Sequence[str],
    endpoint: str,
    access_key: str,
    secret_key: str,
    env_extra: Mapping[str, str] | None = None,
    *,
    addressing_style: AddressingStyle = "path",
    region: str = "us-east-1",
    settings: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> ClientResult:
    """Run the venv's ``s3cmd`` with a private ``.s3cfg`` (SigV4, no TLS check).

    Path style sets ``host_bucket`` to the bare endpoint; virtual-host style to
    ``%(bucket)s.<host:port>``.  ``settings`` adds/overrides ``.s3cfg`` keys.
    """
    parts = urlsplit(endpoint)
    host = _host_port(endpoint)
    with _scratch("s3cmd") as scratch:
        home = Path(scratch)
        values = {
            "access_key": access_key,
            "secret_key": secret_key,
            "host_base": host,
            "host_bucket": host if addressing_style == "path" else f"%(bucket)s.{host}",
            "bucket_location": region,
            "use_https": "True" if parts.scheme == "https" else "False",
            "check_ssl_certificate": "False",
            "signature_v2": "False",
            "proxy_host": "",
            "progress_meter": "False",
        }
        values.update(settings or {})
        cfg = home / "s3cfg"
        cfg.write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
        env = _isolated_env(home, env_extra)
        command = [venv_bin("s3cmd"), "--config", str(cfg), *args]
        return _run(command, env, Path(cwd) if cwd else home, timeout=timeout, check=check, input=input)


def rclone_binary() -> str:
    found = shutil.which("rclone")
    if found is None:
        raise FileNotFoundError("rclone is not installed; run scripts/install-system-deps")
    return found


def run_rclone(
    args: Sequence[str],
    endpoint: str,
    access_key: str,
    secret_key: str,
    env_extra: Mapping[str, str] | None = None,
    *,
    remote: str = "s3",
    addressing_style: AddressingStyle = "path",
    region: str = "us-east-1",
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> ClientResult:
    """Run ``rclone`` with remote ``<remote>:`` (default ``s3:``) on ``endpoint``.

    The remote is defined only through ``RCLONE_CONFIG_<REMOTE>_*`` variables
    (type s3, provider Other) with an empty config file, e.g.
    ``run_rclone(["copyto", "f", "s3:bucket/key"], ...)``.
    """
    with _scratch("rclone") as scratch:
        home = Path(scratch)
        config_file = home / "rclone.conf"
        config_file.write_text("")
        prefix = f"RCLONE_CONFIG_{remote.upper()}_"
        env = _isolated_env(home, None)
        env.update(
            {
                "RCLONE_CONFIG": str(config_file),
                prefix + "TYPE": "s3",
                prefix + "PROVIDER": "Other",
                prefix + "ENV_AUTH": "false",
                prefix + "ACCESS_KEY_ID": access_key,
                prefix + "SECRET_ACCESS_KEY": secret_key,
                prefix + "ENDPOINT": endpoint,
                prefix + "REGION": region,
                prefix + "FORCE_PATH_STYLE": "true" if addressing_style == "path" else "false",
            }
        )
        env.update(env_extra or {})
        command = [rclone_binary(), "--low-level-retries", "1", "--retries", "1", *args]
        return _run(command, env, Path(cwd) if cwd else home, timeout=timeout, check=check, input=input)


def minio_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    region: str = "us-east-1",
) -> Any:
    """A ``minio.Minio`` client on ``endpoint`` (path style for non-AWS hosts)."""
    import minio

    parts = urlsplit(endpoint)
    return minio.Minio(
        _host_port(endpoint),
        access_key=access_key,
        secret_key=secret_key,
        secure=parts.scheme == "https",
        region=region,
        cert_check=False,
    )


_loader: Any = None
_loader_lock = threading.Lock()


def _share_data_loader(session: Any) -> None:
    """
    Give C{session} the botocore data loader of the first session made here,
    so that every client of the test process shares one.  Each loader parses
    the S3 model and the endpoint rules anew (its cache is its own): a fresh
    one for each client cost 0.15 s of CPU, ten times the rest of a client's
    making, thousands of times a run.  Clients of one session share theirs
    the same way.
    """
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _loader)


_sessions = threading.local()


def _session(region: str) -> Any:
    """
    This thread's boto3 session for C{region}, made once: a client made from
    a session of its own cost three times one made from a shared session
    (11 against 3.6 ms of CPU), for thousands of clients a run.  A session
    is not safe across threads (its clients are), hence one per thread.  It
    holds no credentials (each client is given its own) and reads no AWS
    config file.  Each client still has its own copy of the event hooks: a
    handler a test registers on one client is not seen by the others.
    """
    import boto3
    import botocore.session

    made: dict[str, Any] = _sessions.__dict__.setdefault("by_region", {})
    session = made.get(region)
    if session is None:
        core = botocore.session.Session()
        _share_data_loader(core)
        core.set_config_variable("config_file", os.devnull)
        core.set_config_variable("credentials_file", os.devnull)
        session = made[region] = boto3.session.Session(region_name=region, botocore_session=core)
    return session


def boto3_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    addressing_style: AddressingStyle = "path",
    region: str = "us-east-1",
    checksums: Literal["default", "when_required"] = "default",
    verify: bool = True,
    **config: Any,
) -> Any:
    """A boto3 S3 client on ``endpoint``, isolated from the user's AWS config.

    ``verify=False`` skips certificate checks (a self-signed test certificate).

    ``checksums="default"`` keeps botocore's default (CRC checksums on every
    upload, aws-chunked trailers for streaming bodies); ``"when_required"`` sets
    ``request_checksum_calculation`` and ``response_checksum_validation`` to
    ``when_required`` as older SDKs behave.  Retries are off unless ``config``
    says otherwise, so a server error is seen, not hidden.  Other ``config``
    keys go to ``botocore.config.Config``.
    """
    import botocore.config

    options: dict[str, Any] = {
        "s3": {"addressing_style": addressing_style},
        "retries": {"mode": "standard", "max_attempts": 1},
        "signature_version": "s3v4",
    }
    if checksums == "when_required":
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    options.update(config)
    if not verify:
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    return _session(region).client(
        "s3",
        endpoint_url=endpoint,
        verify=verify,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=botocore.config.Config(**options),
    )
