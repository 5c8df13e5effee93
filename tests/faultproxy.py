"""
A TCP proxy for fault tests: put it between the daemon and a backend (or a
database) and make that link misbehave on demand.

    proxy = FaultProxy("127.0.0.1", target_port).start()
    ... point the daemon at 127.0.0.1:proxy.port ...
    proxy.stall()          # stop moving bytes; connections stay open
    proxy.resume()         # move them again
    proxy.cut()            # reset every open connection (RST)
    proxy.refuse = True    # new connections are reset at once
    proxy.stall_after(n)   # move n more bytes client->target, then stall
    proxy.close()

Stalling stops reading from both sockets, so the kernel buffers fill and the
sender blocks: to both peers it looks like a network black hole, not an error.
It runs on plain threads (one per direction per connection), so it works from
blocking test code and from a test whose reactor is busy.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from typing import Optional

__all__ = ["FaultProxy"]

_BUFFER = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) rather than FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Link:
    """One proxied connection: client socket <-> target socket."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, target: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.target = target
        self.closed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        for source, sink, upstream in ((self.client, self.target, True), (self.target, self.client, False)):
            threading.Thread(target=self._pump, args=(source, sink, upstream), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        proxy = self.proxy
        try:
            while not self.closed:
                # Wait while stalled; poll so cut() and close() are noticed.
                if not proxy._flowing.wait(0.05):
                    continue
                readable, _, _ = select.select([source], [], [], 0.05)
                if not readable:
                    continue
                limit = _BUFFER
                if upstream:
                    limit = proxy._upstream_allowance(_BUFFER)
                    if limit == 0:
                        continue
                data = source.recv(limit)
                if not data:
                    # Half-close: pass the FIN on, keep the other direction.
                    try:
                        sink.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                if upstream:
                    proxy._count_upstream(len(data))
                else:
                    proxy._count_downstream(len(data))
                sink.sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket reset meanwhile
            pass
        self.reset()

    def reset(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        _reset(self.client)
        _reset(self.target)
        self.proxy._forget(self)


class FaultProxy:
    """A TCP proxy from 127.0.0.1:<port> to target_host:target_port with fault switches."""

    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._listen_port = listen_port
        self._server: Optional[socket.socket] = None
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._stop = threading.Event()
        self._budget: Optional[int] = None  # upstream bytes left before an automatic stall
        self.refuse = False
        self.upstream_bytes = 0
        self.downstream_bytes = 0
        self.connections = 0

    # -- life -------------------------------------------------------------------

    def start(self) -> FaultProxy:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self._listen_port))
        server.listen(128)
        server.settimeout(0.1)
        self._server = server
        threading.Thread(target=self._accept, daemon=True, name=f"faultproxy-{self.port}").start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        self.cut()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.refuse:
                _reset(client)
                continue
            try:
                target = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            target.settimeout(None)
            client.settimeout(None)
            link = _Link(self, client, target)
            with self._lock:
                self._links.add(link)
                self.connections += 1
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    # -- accounting -------------------------------------------------------------

    def _upstream_allowance(self, wanted: int) -> int:
        with self._lock:
            if self._budget is None:
                return wanted
            if self._budget <= 0:
                self._flowing.clear()
                return 0
            return min(wanted, self._budget)

    def _count_upstream(self, n: int) -> None:
        with self._lock:
            self.upstream_bytes += n
            if self._budget is not None:
                self._budget -= n
                if self._budget <= 0:
                    self._flowing.clear()

    def _count_downstream(self, n: int) -> None:
        with self._lock:
            self.downstream_bytes += n

    # -- faults -----------------------------------------------------------------

    def stall(self) -> None:
        """Stop moving bytes in both directions; connections stay open."""
        self._flowing.clear()

    def stall_after(self, upstream_bytes: int) -> None:
        """Let `upstream_bytes` more bytes go client->target, then stall."""
        with self._lock:
            self._budget = upstream_bytes
        self._flowing.set()

    def resume(self) -> None:
        with self._lock:
            self._budget = None
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def cut(self) -> None:
        """Reset every open connection (new ones are still accepted unless `refuse`)."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.reset()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._links)
