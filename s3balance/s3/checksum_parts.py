"""
The checksums of multipart uploads.

CreateMultipartUpload may name a checksum algorithm
(C{x-amz-checksum-algorithm}) and a type (C{x-amz-checksum-type}:
C{COMPOSITE}, the checksum of the parts' checksums suffixed C{-N}, or
C{FULL_OBJECT}, the checksum of the whole object's bytes).  Each UploadPart's
checksum is verified as it streams (L{s3balance.auth.checksums}) and
recorded with the part (L{s3balance.store.parts}).  At
CompleteMultipartUpload the object's checksum is made from the recorded
parts without reading a byte again: a composite by hashing the parts'
digests, a full-object CRC by combining the parts' CRCs with their lengths
(L{crc_combine}, as zlib's C{crc32_combine}).  A whole-object checksum the
client sends with the Complete is checked against that, not against the XML
body of the request.

The upload's algorithm and type are kept in its stored headers under
L{ALGORITHM_KEY} and L{TYPE_KEY}, which never reach the backend or the
object's headers (L{object_headers}).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Optional
from xml.etree import ElementTree

from s3balance.auth.checksums import ALGORITHMS, new_checksum
from s3balance.errors import S3Error
from s3balance.s3.bodies import trailer_names

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call

ALGORITHM_KEY = "x-amz-checksum-algorithm"
TYPE_KEY = "x-amz-checksum-type"
COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"
# The key of an object's checksums that holds its type, answered on GET/HEAD
# as x-amz-checksum-type beside x-amz-checksum-<algorithm>.
TYPE = "type"

# Above this many parts the object's checksum is made off the reactor thread
# (the pure-Python CRC combine takes ~20 us a part).
INLINE_PARTS = 256

# The XML element of each algorithm's checksum (ListParts, Complete).
ELEMENTS = {
    "crc32": "ChecksumCRC32",
    "crc32c": "ChecksumCRC32C",
    "crc64nvme": "ChecksumCRC64NVME",
    "sha1": "ChecksumSHA1",
    "sha256": "ChecksumSHA256",
}

# Reflected polynomial and width of the CRCs that combine.
_CRCS = {
    "crc32": (0xEDB88320, 32),
    "crc32c": (0x82F63B78, 32),
    "crc64nvme": (0x9A6C9329AC4BC9B5, 64),
}


# -- CreateMultipartUpload -------------------------------------------------------


def requested(call: S3Call) -> tuple[Optional[str], Optional[str]]:
    """
    The checksum algorithm (lower case) and type a CreateMultipartUpload asks
    for, or C{(None, None)}.  Without a type, CRC64NVME is FULL_OBJECT and
    the others COMPOSITE, as S3 decides.
    """
    raw_algorithm = call.header("x-amz-checksum-algorithm")
    raw_type = call.header("x-amz-checksum-type")
    if raw_algorithm is None:
        if raw_type is not None:
            raise S3Error(
                "InvalidRequest", "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            )
        return None, None
    algorithm = raw_algorithm.strip().lower()
    if algorithm not in ALGORITHMS:
        raise S3Error("InvalidRequest", "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")
    if raw_type is None:
        kind = FULL_OBJECT if algorithm == "crc64nvme" else COMPOSITE
    else:
        kind = raw_type.strip().upper()
        if kind not in (COMPOSITE, FULL_OBJECT):
            raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    if kind == FULL_OBJECT and algorithm not in _CRCS:
        raise S3Error("InvalidRequest", f"The FULL_OBJECT checksum type cannot be used with the {algorithm} checksum algorithm.")
    if kind == COMPOSITE and algorithm == "crc64nvme":
        raise S3Error("InvalidRequest", "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.")
    return algorithm, kind


def remember(headers: dict[str, str], algorithm: Optional[str], kind: Optional[str]) -> None:
    """Keep an upload's checksum algorithm and type in its stored headers."""
    if algorithm is not None and kind is not None:
        headers[ALGORITHM_KEY] = algorithm
        headers[TYPE_KEY] = kind


def of_upload(headers: Mapping[str, str]) -> tuple[Optional[str], Optional[str]]:
    """The checksum algorithm and type an upload was created with."""
    return headers.get(ALGORITHM_KEY), headers.get(TYPE_KEY)


def object_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """An upload's stored headers without its checksum settings: the object's headers."""
    return {name: value for name, value in headers.items() if name not in (ALGORITHM_KEY, TYPE_KEY)}


def create_answer_headers(headers: Mapping[str, str]) -> dict[str, str]:
    algorithm, kind = of_upload(headers)
    if algorithm is None or kind is None:
        return {}
    return {"x-amz-checksum-algorithm": algorithm.upper(), "x-amz-checksum-type": kind}


def check_part(headers: Mapping[str, str], call: S3Call) -> None:
    """
    An UploadPart's checksum must be of its upload's algorithm, when the
    upload has one (S3's C{InvalidRequest} otherwise).
    """
    algorithm, _ = of_upload(headers)
    if algorithm is None:
        return
    sent = [name for name in call.headers if _is_checksum(name) and name not in _SETTINGS]
    sent += [name for name in trailer_names(call) if _is_checksum(name)]
    for name in sent:
        if name[len("x-amz-checksum-") :] != algorithm:
            raise S3Error(
                "InvalidRequest",
                f"Checksum Type mismatch occurred, expected checksum Type: {algorithm}, "
                f"actual checksum Type: {name[len('x-amz-checksum-') :]}",
            )


# -- CRC arithmetic ----------------------------------------------------------------


def _multiply(a: int, b: int, poly: int, width: int) -> int:
    """a * b modulo the polynomial, both in the reflected representation."""
    m = 1 << (width - 1)
    product = 0
    while m:
        if a & m:
            product ^= b
            if not a & (m - 1):
                break
        m >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1
    return product


_POWERS: dict[int, list[int]] = {}
_SHIFTS: dict[tuple[int, int], int] = {}


def _shift_operator(poly: int, width: int, length: int) -> int:
    """x^(8 * length) modulo the polynomial (cached: parts mostly share one size)."""
    cached = _SHIFTS.get((poly, length))
    if cached is not None:
        return cached
    powers = _POWERS.get(poly)
    if powers is None:
        # powers[k] = x^(2^k)
        powers = [1 << (width - 2)]
        for _ in range(80):
            powers.append(_multiply(powers[-1], powers[-1], poly, width))
        _POWERS[poly] = powers
    result = 1 << (width - 1)  # x^0
    n, k = length, 3
    while n:
        if n & 1:
            result = _multiply(powers[k], result, poly, width)
        n >>= 1
        k += 1
    if len(_SHIFTS) > 256:
        _SHIFTS.clear()
    _SHIFTS[(poly, length)] = result
    return result


def python_crc_combine(algorithm: str, crc1: int, crc2: int, length2: int) -> int:
    """The CRC of A + B from the CRC of A, the CRC of B and B's length."""
    poly, width = _CRCS[algorithm]
    if length2 == 0:
        return crc1
    return _multiply(_shift_operator(poly, width, length2), crc1, poly, width) ^ crc2


def _native_combines() -> dict:
    """awscrt's C combines when installed (about a hundred times faster)."""
    try:
        from awscrt import checksums  # type: ignore[import-untyped]
    except ImportError:
        return {}
    found = {}
    for algorithm in _CRCS:
        function = getattr(checksums, f"combine_{algorithm}", None)
        if function is not None:
            found[algorithm] = function
    return found


_NATIVE = _native_combines()


def crc_combine(algorithm: str, crc1: int, crc2: int, length2: int) -> int:
    """The CRC of A + B from the CRC of A, the CRC of B and B's length."""
    native = _NATIVE.get(algorithm)
    if native is not None:
        return native(crc1, crc2, length2)
    return python_crc_combine(algorithm, crc1, crc2, length2)


def full_object(algorithm: str, parts: Iterable[tuple[str, int]]) -> str:
    """The CRC of the concatenated parts, from their (base64 CRC, size)."""
    size = _CRCS[algorithm][1] // 8
    crc = 0
    for value, length in parts:
        crc = crc_combine(algorithm, crc, int.from_bytes(base64.b64decode(value), "big"), length)
    return base64.b64encode(crc.to_bytes(size, "big")).decode("ascii")


def composite(algorithm: str, values: Sequence[str]) -> str:
    """The checksum of the parts' checksums, suffixed with the number of parts."""
    digest = new_checksum(algorithm)
    for value in values:
        digest.update(base64.b64decode(value))
    return f"{base64.b64encode(digest.digest()).decode('ascii')}-{len(values)}"


# -- CompleteMultipartUpload ---------------------------------------------------------


_SETTINGS = frozenset({"x-amz-checksum-type", "x-amz-checksum-algorithm", "x-amz-checksum-mode"})


def _is_checksum(name: str) -> bool:
    return name.startswith("x-amz-checksum-")


def listed_checksums(body: bytes) -> dict[int, dict[str, str]]:
    """The part checksums a CompleteMultipartUpload lists: number -> {algorithm: base64}."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return {}
    ns = root.tag.split("}", 1)[0] + "}" if root.tag.startswith("{") else ""
    found: dict[int, dict[str, str]] = {}
    for part in root.findall(f"{ns}Part"):
        try:
            number = int((part.findtext(f"{ns}PartNumber") or "").strip())
        except ValueError:
            continue
        for algorithm, element in ELEMENTS.items():
            value = part.findtext(f"{ns}{element}")
            if value is not None:
                found.setdefault(number, {})[algorithm] = value.strip()
    return found


def _requested_whole(call: S3Call) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """The whole-object checksum a Complete sends: (algorithm, base64, type)."""
    kind = call.header("x-amz-checksum-type")
    kind = kind.strip().upper() if kind is not None else None
    for name, values in call.headers.items():
        if not name.startswith("x-amz-checksum-") or name in (
            "x-amz-checksum-type",
            "x-amz-checksum-algorithm",
            "x-amz-checksum-mode",
        ):
            continue
        algorithm = name[len("x-amz-checksum-") :]
        if algorithm not in ALGORITHMS:
            raise S3Error("InvalidRequest", f"The algorithm type you specified in {name} header is invalid.")
        return algorithm, (values[0] if values else "").strip(), kind
    return None, None, kind


def object_checksums(
    call: S3Call,
    upload_headers: Mapping[str, str],
    listed: Sequence[tuple[int, str]],
    listed_sums: Mapping[int, Mapping[str, str]],
    recorded: Mapping[int, tuple[int, str, Mapping[str, str]]],
) -> dict[str, str]:
    """
    The checksums of the object a Complete makes, C{{algorithm: value,
    "type": COMPOSITE | FULL_OBJECT}} (empty when the parts' checksums are not
    all known).

    @param listed: the (number, ETag) of the parts the client lists.
    @param listed_sums: the checksums it lists with them.
    @param recorded: number -> (size, ETag, verified checksums) of the parts received.
    @raise S3Error: C{InvalidPart} for a listed part checksum that is not the
        part's, C{BadDigest} for a whole-object checksum that is not the
        object's, C{InvalidRequest} for one that cannot be checked.
    """
    algorithm, kind = of_upload(upload_headers)
    parts = []
    known = True
    for number, etag in listed:
        entry = recorded.get(number)
        if entry is None or entry[1] != etag:
            known = False
            continue
        size, _, sums = entry
        for listed_algorithm, value in listed_sums.get(number, {}).items():
            if listed_algorithm in sums and sums[listed_algorithm] != value:
                raise S3Error(
                    "InvalidPart",
                    "One or more of the specified parts could not be found.  The part may not have been uploaded, "
                    "or the specified entity tag may not have matched the part's entity tag.",
                    PartNumber=str(number),
                )
        parts.append((size, sums))

    whole_algorithm, whole_value, whole_kind = _requested_whole(call)
    if whole_algorithm is not None and whole_value is not None:
        composite_value = "-" in whole_value or whole_kind == COMPOSITE
        if whole_kind is None:
            whole_kind = COMPOSITE if composite_value else FULL_OBJECT
        if algorithm is not None and whole_algorithm != algorithm:
            raise S3Error(
                "InvalidRequest",
                f"The upload was created using the {algorithm} checksum algorithm; "
                f"the complete request sent a {whole_algorithm} checksum.",
            )
        if whole_kind == FULL_OBJECT and whole_algorithm not in _CRCS:
            raise S3Error(
                "InvalidRequest", f"The FULL_OBJECT checksum type cannot be used with the {whole_algorithm} checksum algorithm."
            )
        computed = _compute(whole_algorithm, whole_kind, parts, known)
        if computed is None:
            raise S3Error(
                "InvalidRequest",
                f"The {whole_algorithm} checksum of the object cannot be checked: "
                "not every part was uploaded with that checksum.",
            )
        expected = whole_value if whole_kind == COMPOSITE else _normalized(whole_algorithm, whole_value)
        if computed != expected:
            raise S3Error(
                "BadDigest", f"The {whole_algorithm.upper()} you specified did not match the calculated checksum."
            )
        return {whole_algorithm: computed, TYPE: whole_kind}
    if algorithm is None or kind is None:
        return {}
    computed = _compute(algorithm, kind, parts, known)
    return {} if computed is None else {algorithm: computed, TYPE: kind}


def _compute(algorithm: str, kind: str, parts: list[tuple[int, Mapping[str, str]]], known: bool) -> Optional[str]:
    if not known or not parts or any(algorithm not in sums for _, sums in parts):
        return None
    if kind == FULL_OBJECT:
        return full_object(algorithm, [(sums[algorithm], size) for size, sums in parts])
    return composite(algorithm, [sums[algorithm] for _, sums in parts])


def _normalized(algorithm: str, value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != ALGORITHMS[algorithm][1]:
        raise S3Error("InvalidRequest", f"Value for x-amz-checksum-{algorithm} header is invalid.")
    return base64.b64encode(raw).decode("ascii")


def result_elements(checksums: Mapping[str, str]) -> list[tuple[str, str]]:
    """The Checksum* and ChecksumType elements of a result document."""
    elements = [(ELEMENTS[name], value) for name, value in checksums.items() if name in ELEMENTS]
    if elements and TYPE in checksums:
        elements.append(("ChecksumType", checksums[TYPE]))
    return elements


def upload_elements(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The ChecksumAlgorithm and ChecksumType elements of ListParts."""
    algorithm, kind = of_upload(headers)
    if algorithm is None or kind is None:
        return []
    return [("ChecksumAlgorithm", algorithm.upper()), ("ChecksumType", kind)]


def latest_parts(elements: Sequence[ElementTree.Element], ns: str, received: Mapping[int, object]) -> list:
    """
    A backend's ListParts entries with one entry per part number.  A backend
    may list a part sent twice twice (SeaweedFS does): the part is the
    upload the backend confirmed last, which is the one recorded here
    (L{s3balance.store.parts}); failing that, the last modified.
    """
    chosen: dict[str, ElementTree.Element] = {}
    order: list[str] = []
    for element in elements:
        number = (element.findtext(f"{ns}PartNumber") or "").strip()
        previous = chosen.get(number)
        if previous is None:
            order.append(number)
            chosen[number] = element
            continue
        try:
            mine = getattr(received.get(int(number)), "etag", None)
        except ValueError:
            mine = None
        if mine is not None and previous.findtext(f"{ns}ETag") == mine and element.findtext(f"{ns}ETag") != mine:
            continue
        if mine is not None and element.findtext(f"{ns}ETag") == mine:
            chosen[number] = element
        elif (element.findtext(f"{ns}LastModified") or "") >= (previous.findtext(f"{ns}LastModified") or ""):
            chosen[number] = element
    return [chosen[number] for number in order]


def check_object_size(
    call: S3Call, listed: Sequence[tuple[int, str]], recorded: Mapping[int, tuple[int, str, object]]
) -> None:
    """
    A Complete's C{x-amz-mp-object-size} must be the object's size (S3's
    C{InvalidRequest} otherwise); checked when every listed part is known.
    """
    raw = call.header("x-amz-mp-object-size")
    if raw is None:
        return
    try:
        expected = int(raw)
    except ValueError:
        raise S3Error("InvalidRequest", "Value for x-amz-mp-object-size header is invalid.") from None
    sizes = []
    for number, etag in listed:
        entry = recorded.get(number)
        if entry is None or entry[1] != etag:
            return
        sizes.append(entry[0])
    if sum(sizes) != expected:
        raise S3Error(
            "InvalidRequest",
            f"The provided x-amz-mp-object-size {expected} does not match the object size {sum(sizes)}.",
        )
