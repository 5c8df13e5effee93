"""
Reading a backend's small answers: the body of a control request or an
error (L{AnswerBody}, cut off when it stalls), the deadline for the answer
to a PUT once its body was sent (L{AnswerDeadline}), and the few fields we
take from S3's XML documents.
"""

from __future__ import annotations

from typing import Any, Optional, cast
from xml.etree import ElementTree

from twisted.internet.defer import Deferred
from twisted.internet.error import TimeoutError
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss


def quoted(etag: str) -> str:
    """ETags are quoted in S3 answers; some backends leave the quotes out in XML documents."""
    etag = etag.strip()
    return etag if etag.startswith('"') else f'"{etag}"'


def find_text(document: bytes, tag: str) -> str | None:
    """The text of the first element named C{tag} (any namespace) in an XML answer."""
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag == tag or element.tag.endswith("}" + tag):
            return element.text
    return None


def ids_of_key(document: bytes, key: str, entries: tuple[str, ...], id_tag: str) -> list[str]:
    """
    The C{id_tag} values of the C{entries} elements (any depth) of a listing
    whose C{Key} is exactly C{key} (a listing by prefix also shows longer
    keys); none from a document that does not parse.
    """
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        return []
    found = []
    for entry in root.iter():
        if entry.tag.split("}")[-1] not in entries:
            continue
        values = {child.tag.split("}")[-1]: child.text for child in entry}
        value = values.get(id_tag)
        if values.get("Key") == key and value:
            found.append(value)
    return found


def s3_error_code(body: bytes) -> tuple[str, str]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return "", body[:200].decode("utf-8", "replace")
    return root.findtext("Code") or "", root.findtext("Message") or ""


class AnswerBody(Protocol):
    """
    Collects an answer's body into C{done}; once L{watch}ed, a backend that
    sends nothing for C{timeout} seconds is cut off (C{expired}).
    """

    def __init__(self, done: Deferred) -> None:
        self.done = done
        self.chunks: list[bytes] = []
        self.expired = False
        self._clock: Optional[IReactorTime] = None
        self._timeout = 0.0
        self._call: Optional[IDelayedCall] = None

    def watch(self, clock: IReactorTime, timeout: float) -> None:
        self._clock, self._timeout = clock, timeout
        self._call = clock.callLater(timeout, self._expire)

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        if self._call is not None and self._call.active():
            self._call.reset(self._timeout)

    def _expire(self) -> None:
        self._call = None
        if not self.done.called:
            self.expired = True
            producer = cast(Optional[IPushProducer], self.transport)
            if producer is not None:
                producer.stopProducing()  # drops the connection
            if not self.done.called:
                self.done.errback(Failure(TimeoutError("no answer bytes")))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        if self.done.called:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


class AnswerDeadline:
    """
    Cancels (and so cuts the connection of) a request whose answer has not
    begun C{timeout} seconds after L{arm}; C{expired} then says why it failed.
    """

    def __init__(self, clock: IReactorTime, timeout: float, request: Deferred) -> None:
        self.clock = clock
        self.timeout = timeout
        self.request: Optional[Deferred] = request
        self.expired = False
        self._call: Optional[IDelayedCall] = None
        request.addBoth(self._answered)

    def arm(self, _: object = None) -> None:
        if self.request is not None and self._call is None:
            self._call = self.clock.callLater(self.timeout, self._expire)

    def _expire(self) -> None:
        self._call = None
        request, self.request = self.request, None
        if request is not None:
            self.expired = True
            request.cancel()

    def _answered(self, result: Any) -> Any:
        self.request = None
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        return result


__all__ = ["AnswerBody", "AnswerDeadline", "find_text", "quoted", "s3_error_code"]
