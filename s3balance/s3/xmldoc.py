"""
Small, fast builders for the S3 XML documents we answer with, and a safe
parser for the ones clients send.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Optional, Union
from urllib.parse import quote
from xml.etree import ElementTree

from s3balance.errors import S3Error, xml_text

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'

# Elements nested this way: ("Tag", value) or ("Tag", [children...]).
Node = tuple[str, Union[str, int, bool, None, "Iterable[Node]"]]


def iso8601(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return xml_text(str(value))


def _render(node: Node, out: list[str]) -> None:
    tag, value = node
    if value is None:
        return
    if isinstance(value, (str, int, bool)):
        out.append(f"<{tag}>{_text(value)}</{tag}>")
        return
    out.append(f"<{tag}>")
    for child in value:
        _render(child, out)
    out.append(f"</{tag}>")


def document(root: str, children: Iterable[Node]) -> bytes:
    out = [_HEAD, f'<{root} xmlns="{S3_NS}">']
    for child in children:
        _render(child, out)
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


def listed_key(key: str, url: bool) -> str:
    """A key in a listing: URL-encoded when the client asked for encoding-type=url."""
    return quote(key, safe="/~") if url else key


def parse(body: bytes, max_size: int = 4 * 1024 * 1024) -> ElementTree.Element:
    """
    Parse a client XML document; namespaces are stripped from tag names.
    Entities and DTDs are refused (no billion laughs).
    """
    if len(body) > max_size:
        raise S3Error("MalformedXML", "The XML document is too large.")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3Error("MalformedXML")
    try:
        root = ElementTree.fromstring(body)
    except (ElementTree.ParseError, LookupError, ValueError):
        # LookupError: an unknown encoding in the XML declaration.
        raise S3Error("MalformedXML") from None
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]
    return root


def child_text(element: ElementTree.Element, tag: str) -> Optional[str]:
    found = element.find(tag)
    return None if found is None else (found.text or "")
