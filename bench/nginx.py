"""
nginx as a plain reverse proxy in front of one S3 server, the reference a
proxy written in C sets for s3balance.

Everything lives in a temporary prefix: the config, the pid file, the error
log and the temp directories, so nothing under /etc, /var or /run is read or
written.  Bodies stream both ways (C{proxy_buffering off},
C{proxy_request_buffering off}, no size limit) over kept-alive HTTP/1.1
upstream connections, and the client's Host header is passed through
unchanged, so a client that signs for nginx's address is verified by the
backend against that same Host.

nginx comes from Debian's C{nginx-light}: C{apt-get install -y nginx-light}.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from tests.harness import HarnessError, ManagedProcess, free_port, wait_for_port

INSTALL_HINT = (
    "nginx is not installed: run `apt-get install -y nginx-light` "
    "(and add nginx-light to scripts/install-system-deps so `make bench` has it)"
)

TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

CONFIG = """\
{user}worker_processes {workers};
error_log {prefix}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    upstream backend {{
        server {upstream};
        keepalive 64;
    }}

    server {{
        listen 127.0.0.1:{port} backlog=1024;
        client_max_body_size 0;

        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_request_buffering off;{buffer}
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
    }}
}}
"""


def find_nginx() -> Optional[str]:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )


class Nginx:
    """nginx proxying C{127.0.0.1:<port>} to C{upstream} (host:port)."""

    def __init__(
        self, upstream: str, workers: str = "auto", buffer: str = "", binary: Optional[str] = None
    ) -> None:
        found = binary or find_nginx()
        if found is None:
            raise HarnessError(INSTALL_HINT)
        self.binary = found
        self.upstream = upstream
        self.workers = workers
        # proxy_buffer_size: with proxy_buffering off, the most nginx reads from
        # the upstream and writes to the client at once (default: one page).
        self.buffer = buffer
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="s3balance-bench-nginx-"))
        self.conf = self.prefix / "nginx.conf"
        self.pidfile = self.prefix / "nginx.pid"
        self.error_log = self.prefix / "error.log"
        self.process: Optional[ManagedProcess] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        for name in TEMP_DIRS:
            (self.prefix / name).mkdir(exist_ok=True)
        # As root, nginx would run its workers as "nobody", who can't enter
        # our private prefix: keep them as the current user.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            CONFIG.format(
                user=user,
                workers=self.workers,
                prefix=self.prefix,
                upstream=self.upstream,
                port=self.port,
                buffer=(
                    f"\n            proxy_buffer_size {self.buffer};"
                    f"\n            proxy_buffers 4 {self.buffer};"
                    f"\n            proxy_busy_buffers_size {self.buffer};"
                )
                if self.buffer
                else "",
            )
        )

    def args(self) -> list[str]:
        return [
            self.binary,
            "-p",
            str(self.prefix),
            "-c",
            str(self.conf),
            "-e",
            str(self.error_log),
            "-g",
            f"daemon off; pid {self.pidfile};",
        ]

    def start(self, timeout: float = 15.0) -> Nginx:
        self.write_config()
        check = subprocess.run([*self.args(), "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise HarnessError(f"nginx -t failed:\n{check.stderr}{check.stdout}")
        self.process = ManagedProcess("nginx", self.args(), log_path=self.prefix / "nginx.out")
        self.process.start()
        wait_for_port("127.0.0.1", self.port, timeout=timeout, process=self.process)
        return self

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    def pids(self) -> list[int]:
        """The master and its worker processes (for CPU accounting)."""
        if self.pid is None:
            return []
        return [self.pid, *children(self.pid)]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=5.0)
            self.process = None
        # Give the kernel a moment to reap workers before removing their cwd.
        time.sleep(0.05)
        shutil.rmtree(self.prefix, ignore_errors=True)


def children(pid: int) -> list[int]:
    """Direct child pids of C{pid} (from /proc)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    found.extend(int(p) for p in f.read().split())
            except OSError:
                pass
    except OSError:
        return []
    if found:
        return found
    # Kernels without the "children" file: scan every process's parent.
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found
