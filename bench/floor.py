"""
The floor: what the least Python/Twisted S3 proxy costs on this machine.

s3balance is a twisted.web server that forwards to backends over its own
HTTP client (s3balance.backends.client).  This module is the same two pieces
with everything else taken out: one leaf resource on a twisted.web C{Site}
that sends each request on to SeaweedFS as it came (method, path, query and
headers, Host included, like nginx's C{proxy_pass}: the client signs for the
backend, nothing is re-signed) and relays the answer.  No authentication, no
database, no placement, no metrics, no logging of requests.  A request body
is buffered by twisted.web (the benchmark's 4 KiB; not for big objects) and
a response body is relayed as it arrives.

Run by C{python -m bench --floor}; measured as the target C{twisted} beside
nginx, it answers the question the 4 KiB targets raise: how much of the gap
to nginx is Python and Twisted themselves, and how much is s3balance's work.

    python -m bench.floor PORT UPSTREAM_HOST:UPSTREAM_PORT
"""

from __future__ import annotations

import sys

# The reactor twistd picks on Linux, before anything imports the default one.
from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.web.client import ResponseDone  # noqa: E402
from twisted.web.http import PotentialDataLoss  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.server import NOT_DONE_YET, Site  # noqa: E402

from s3balance.backends.client import HTTPClient  # noqa: E402
from s3balance.backends.streaming import PipeProducer  # noqa: E402
from s3balance.http.channel import S3Channel  # noqa: E402
from s3balance.http.transport import send_together  # noqa: E402

HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"expect"}


def _in_memory(data: bytes) -> PipeProducer:
    """A body already in memory, sent the way s3balance sends small bodies (Backend._simple)."""
    body = PipeProducer(len(data))
    body.write(data)
    body.finish()
    return body


class _Relay:
    """A response body's protocol: each piece goes to the client as it comes."""

    def __init__(self, request) -> None:
        self._request = request
        self._first = True

    def makeConnection(self, transport) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        if self._first:
            # The response's head and first piece in one send, as s3balance does.
            self._first = False
            send_together(self._request.channel.transport, lambda: self._request.write(data))
        else:
            self._request.write(data)

    def connectionLost(self, reason) -> None:
        request = self._request
        if request.finished or request._disconnected:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            request.finish()
        else:
            request.channel.transport.abortConnection()  # a cut-off body is not passed off as whole


class Forward(Resource):
    isLeaf = True

    def __init__(self, client: HTTPClient, upstream: tuple[str, str, int]) -> None:
        super().__init__()
        self._client = client
        self._upstream = upstream

    def render(self, request):
        body = request.content.read() if request.content is not None else b""
        lines = [request.method + b" " + request.uri + b" HTTP/1.1"]
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != b"content-length":  # set below
                lines.extend(name + b": " + value for value in values)
        if body or request.method in (b"PUT", b"POST"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        d = self._client.request(self._upstream, head, _in_memory(body) if body else None, request.method == b"HEAD")
        d.addCallbacks(self._answer, self._failed, callbackArgs=(request,), errbackArgs=(request,))
        return NOT_DONE_YET

    def _answer(self, response, request) -> None:
        request.setResponseCode(response.code)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in HOP_BY_HOP:
                request.responseHeaders.setRawHeaders(name, values)
        response.deliverBody(_Relay(request))

    def _failed(self, failure, request) -> None:
        if not request.finished and not request._disconnected:
            request.setResponseCode(502)
            request.finish()


def main(argv: list[str]) -> None:
    port = int(argv[0])
    host, _, upstream_port = argv[1].rpartition(":")
    site = Site(Forward(HTTPClient(reactor), ("http", host, int(upstream_port))))
    # s3balance's connection class: TCP_NODELAY, eager writes, 256 KiB reads.
    site.protocol = S3Channel
    site.displayTracebacks = False
    site.log = lambda request: None  # no access log, as in s3balance's default
    reactor.listenTCP(port, site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
