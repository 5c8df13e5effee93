"""
A streaming parser of C{multipart/form-data} bodies (RFC 7578), for S3's
POST Object (L{s3balance.s3.form_upload}).

The fields before the C{file} part are small and read whole, within a cap on
all the bytes before the file's content (L{FormTooLarge} past it); the
C{file} part's content is handed on piece by piece as it arrives and is never
held whole: at most the length of the delimiter is kept back between two
chunks, so a delimiter split across chunks at any offset is still found.
Whatever follows the end of the file part is ignored (S3 ignores the fields
after C{file}).

Pure: no I/O, no Twisted.  The caller feeds the body as it arrives
(L{MultipartFormParser.feed}) and says when it ended
(L{MultipartFormParser.finish}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import attr

MAX_PART_HEADERS = 8 * 1024


class MalformedForm(Exception):
    """The body is not well-formed C{multipart/form-data}."""


class FormTooLarge(Exception):
    """The bytes before the file's content exceed the parser's cap."""


class MissingFile(Exception):
    """The form ended without a C{file} part."""


@attr.s(frozen=True, auto_attribs=True)
class FileStart:
    """The C{file} part begins: its filename (a base name) and content type, as the client sent them."""

    filename: Optional[str]
    content_type: Optional[str]


def boundary_of(content_type: str) -> bytes:
    """
    The boundary of a C{multipart/form-data} Content-Type.

    @raise MalformedForm: another media type, or no usable boundary.
    """
    media, params = _split_parameters(content_type)
    if media.lower() != "multipart/form-data":
        raise MalformedForm("not multipart/form-data")
    boundary = params.get("boundary")
    # RFC 2046 §5.1.1: 1 to 70 characters.
    if not boundary or len(boundary) > 70:
        raise MalformedForm("no boundary")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedForm("boundary is not ASCII") from None


def _split_parameters(value: str) -> tuple[str, dict[str, str]]:
    """C{type; a=b; c="d"} -> (C{type}, {a: b, c: d}); names lower-cased, quotes and backslash escapes removed."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t;":
            i += 1
        start = i
        while i < n and rest[i] not in "=;":
            i += 1
        name = rest[start:i].strip().lower()
        if i >= n or rest[i] == ";":
            if name:
                params.setdefault(name, "")
            continue
        i += 1  # '='
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            i += 1  # closing quote (or end)
            param_value = "".join(chars)
        else:
            start = i
            while i < n and rest[i] != ";":
                i += 1
            param_value = rest[start:i].strip()
        if name and name not in params:
            params[name] = param_value
    return head.strip(), params


def _base_name(filename: str) -> str:
    """What a browser that sends a whole path (old IE: C{C:\\dir\\a.txt}) meant: the last component."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1]


class MultipartFormParser:
    """
    Parse one C{multipart/form-data} body, fed in chunks.

    States: C{preamble} (before the first delimiter), C{headers} (a part's
    header block), C{field} (a field's value, buffered), C{file} (the file's
    content, streamed to C{on_file_data}), C{done} (the file part ended:
    the rest is ignored).  The file part is the first part named C{file}
    that has a C{filename}, or the first named C{file} (S3 takes an input
    field named C{file} as the file).

    @param on_field: called with (name, value) for each field before the
        file; the name as sent, the value as bytes.
    @param on_file_start: called once when the file's content begins.
    @param on_file_data: called with each piece of the file's content.
    @param on_file_end: called once when the file's content ended.
    @param max_before_file: the cap on the bytes before the file's content.
    """

    def __init__(
        self,
        boundary: bytes,
        on_field: Callable[[str, bytes], None],
        on_file_start: Callable[[FileStart], None],
        on_file_data: Callable[[bytes], None],
        on_file_end: Callable[[], None],
        max_before_file: int,
    ) -> None:
        # A virtual CRLF in front of the body: the first delimiter is then
        # found like every other one.
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray(b"\r\n")
        self._state = "preamble"
        self._consumed = -2  # bytes of the body before the file, not counting the virtual CRLF
        self._max = max_before_file
        self._on_field = on_field
        self._on_file_start = on_file_start
        self._on_file_data = on_file_data
        self._on_file_end = on_file_end
        self._part_name = ""
        self._part_is_file = False

    @property
    def file_ended(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> None:
        """
        Parse the next chunk of the body.

        @raise MalformedForm: the body is not well-formed.
        @raise FormTooLarge: the fields before the file are over the cap.
        @raise MissingFile: the form ended without a file.
        """
        if self._state == "done":
            return
        if self._state == "file":
            self._feed_file(data)
            return
        self._buffer += data
        self._parse_fields()
        if self._state not in ("file", "done") and len(self._buffer) + self._consumed > self._max:
            raise FormTooLarge()

    def finish(self) -> None:
        """
        The body ended.

        @raise MalformedForm: it ended within a part, or before any.
        """
        if self._state == "done":
            return
        if self._state == "file":
            raise MalformedForm("the body ended within the file")
        # A form that ended on its closing delimiter without a file raised
        # MissingFile there; this one ended within a part or before any.
        raise MalformedForm("the body ended within a part")

    # -- before the file ------------------------------------------------------

    def _take(self, count: int) -> bytes:
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        self._consumed += count
        return taken

    def _parse_fields(self) -> None:
        while True:
            if self._state == "preamble":
                at = self._buffer.find(self._delimiter)
                if at < 0:
                    # Keep what could begin a delimiter; the rest is preamble.
                    keep = len(self._delimiter) - 1
                    if len(self._buffer) > keep:
                        self._take(len(self._buffer) - keep)
                    return
                self._take(at + len(self._delimiter))
                self._state = "after-delimiter"
            if self._state == "after-delimiter":
                if len(self._buffer) < 2:
                    return
                if self._buffer[:2] == b"--":
                    # The closing delimiter, and no file before it.
                    raise MissingFile()
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > 256:
                        raise MalformedForm("garbage after a delimiter")
                    return
                if self._buffer[:end].strip(b" \t"):
                    raise MalformedForm("garbage after a delimiter")
                self._take(end + 2)
                self._state = "headers"
            if self._state == "headers":
                end = self._buffer.find(b"\r\n\r\n")
                if self._buffer.startswith(b"\r\n"):
                    end = -2  # no header at all
                if end == -1:
                    if len(self._buffer) > MAX_PART_HEADERS:
                        raise MalformedForm("part headers too long")
                    return
                block = self._take(end + 4)[: max(end, 0)]
                self._start_part(block)
                if self._part_is_file:
                    self._state = "file"
                    rest = bytes(self._buffer)
                    self._buffer = bytearray()
                    self._feed_file(rest)
                    return
                self._state = "field"
            if self._state == "field":
                at = self._buffer.find(self._delimiter)
                if at < 0:
                    return
                value = self._take(at)
                self._take(len(self._delimiter))
                self._on_field(self._part_name, value)
                self._state = "after-delimiter"

    def _start_part(self, block: bytes) -> None:
        disposition: Optional[str] = None
        content_type: Optional[str] = None
        for raw_line in block.split(b"\r\n"):
            if not raw_line:
                continue
            name, colon, value = raw_line.partition(b":")
            if not colon:
                raise MalformedForm("a part header without a colon")
            # Browsers send names and filenames in UTF-8.
            text = value.decode("utf-8", "replace").strip()
            lower = name.strip().lower()
            if lower == b"content-disposition":
                disposition = text
            elif lower == b"content-type":
                content_type = text
        if disposition is None:
            raise MalformedForm("a part without Content-Disposition")
        kind, params = _split_parameters(disposition)
        if kind.lower() != "form-data" or "name" not in params:
            raise MalformedForm("a part that is not a form-data field")
        self._part_name = params["name"]
        self._part_is_file = self._part_name.lower() == "file"
        if self._part_is_file:
            if self._consumed > self._max:
                raise FormTooLarge()
            filename = params.get("filename")
            self._on_file_start(
                FileStart(_base_name(filename) if filename is not None else None, content_type)
            )

    # -- the file ---------------------------------------------------------------

    def _feed_file(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        at = buffer.find(self._delimiter)
        if at >= 0:
            if at:
                self._on_file_data(bytes(buffer[:at]))
            self._buffer = bytearray()
            self._state = "done"
            self._on_file_end()
            return
        # Hand on all but what could be the start of a delimiter.
        keep = min(len(buffer), len(self._delimiter) - 1)
        cut = len(buffer) - keep
        if cut:
            self._on_file_data(bytes(buffer[:cut]))
            del buffer[:cut]
