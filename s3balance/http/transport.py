"""
Transport tuning shared by both sides of the proxy: the connections clients
make to us (L{s3balance.s3.request}) and the ones we make to backends
(L{s3balance.backends.client}).  Big socket reads, TCP_NODELAY, and writes
that go to the socket at once when nothing is queued.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

from twisted.internet import tcp

STREAM_BUFFER = 256 * 1024

def tune_connection(transport: Any) -> None:
    """
    Settings for a client or backend connection of ours.

     - 256 KiB socket reads, and that much written but unsent before a body
       producer is paused: a quarter of the Python work per MiB streamed.
     - Eager writes (L{_EagerWrites}).
     - TCP_NODELAY, as nginx's C{tcp_nodelay}.  We write whole messages or big
       pieces of a stream, never a byte at a time.  With Nagle's algorithm
       on, a body written after its head (a PUT whose client waited for
       C{100 Continue}, every SDK's default) sat in the kernel until the
       backend acknowledged the head, which a delayed ACK postpones by 40 ms:
       boto3's 4 KiB PUTs took ~50 ms each through the daemon.

    A TLS layer (a ProtocolWrapper) hands attribute lookups to the TCP
    transport under it.
    """
    if hasattr(transport, "bufferSize"):
        transport.bufferSize = STREAM_BUFFER
    _write_eagerly(transport)
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except OSError:
            pass  # not TCP after all


class _EagerWrites:
    """
    A TCP transport's C{write} that sends at once when nothing is queued.

    Twisted's transports only queue a write and ask the reactor to say when
    the socket is writable: two C{epoll_ctl} calls (writer on, writer off)
    and a pass through the reactor's dispatch for every message, although
    the kernel nearly always takes a small message whole at once.  That was
    6 of the 46 system calls of a 4 KiB PUT through the daemon.  Here a write
    with nothing queued before it goes to the socket directly (as asyncio's
    transports do); only what the kernel does not take is queued the usual
    way, so ordering, producer pausing and connection loss behave as before.
    Never with a pull producer (it is resumed only when a queued write
    drains) or once the connection is closing or aborted: nothing written
    after C{abortConnection()} may reach the peer (an aborted upload's last
    bytes would let the backend complete the object).

    Twisted's queue also joined a message's pieces (a response's head and
    body, written one after the other) into one send.  L{cork} keeps that:
    writes between C{cork()} and C{uncork()} are held and go out as one.
    """

    _corked: Optional[list] = None

    def cork(self) -> None:
        """Hold writes until L{uncork} (use try/finally: nothing may stay held)."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        held, self._corked = self._corked, None
        if held:
            self._write_all(held)

    def _write_all(self, chunks: list) -> None:
        """Small pieces joined into one send; big ones (a body) not copied."""
        if len(chunks) == 1:
            self.write(chunks[0])
        elif sum(len(chunk) for chunk in chunks) <= _JOIN_LIMIT:
            self.write(b"".join(chunks))
        else:
            for chunk in chunks:
                self.write(chunk)

    def loseConnection(self, *args: Any, **kwargs: Any) -> None:
        self.uncork()  # what was written before closing is sent before closing
        super().loseConnection(*args, **kwargs)  # type: ignore[misc]

    def write(self, data: bytes) -> None:
        if self._corked is not None and type(data) is bytes:
            if data and self.connected and not self._writeDisconnected:  # type: ignore[attr-defined]
                self._corked.append(data)
            return
        if (
            type(data) is bytes
            and data
            and self.connected  # type: ignore[attr-defined]
            and not self.disconnecting  # type: ignore[attr-defined]
            and not self._aborting  # type: ignore[attr-defined]
            and not self._writeDisconnected  # type: ignore[attr-defined]
            and not self.TLS  # type: ignore[attr-defined]
            and not self.dataBuffer  # type: ignore[attr-defined]
            and not self._tempDataBuffer  # type: ignore[attr-defined]
            and (self.producer is None or self.streamingProducer)  # type: ignore[attr-defined]
        ):
            sent = self.writeSomeData(data)  # type: ignore[attr-defined]
            if not isinstance(sent, Exception):
                if sent == len(data):
                    return
                data = data[sent:]
        super().write(data)  # type: ignore[misc]

    def writeSequence(self, iovec: Sequence[bytes]) -> None:
        if not iovec:
            return
        if all(type(chunk) is bytes for chunk in iovec):
            self._write_all(list(iovec))
        else:
            super().writeSequence(iovec)  # type: ignore[misc]


def send_together(transport: Any, write: Callable[[], Any]) -> Any:
    """
    Call C{write()}, which writes to C{transport}, holding what it writes
    until it returns (L{_EagerWrites.cork}): one send for a message's pieces.
    """
    cork = getattr(transport, "cork", None)
    if cork is None:
        return write()
    cork()
    try:
        return write()
    finally:
        transport.uncork()


# Pieces up to this much in all are joined into one send.
_JOIN_LIMIT = 64 * 1024

_eager_classes: dict[type, type] = {}


def _write_eagerly(transport: Any) -> None:
    """Give a TCP transport (under a TLS layer, if any) L{_EagerWrites}."""
    for _ in range(3):
        if isinstance(transport, tcp.Connection):
            break
        transport = getattr(transport, "transport", None)
    else:
        return
    cls = type(transport)
    if issubclass(cls, _EagerWrites):
        return
    eager = _eager_classes.get(cls)
    if eager is None:
        eager = _eager_classes[cls] = type(f"Eager{cls.__name__}", (_EagerWrites, cls), {})
    transport.__class__ = eager
