"""The external learner protocol, version 1, on the program's side (docs/learners.md in FLARE-TS).

A record is ``u64 little-endian length L`` followed by L bytes: ``b"FLTS" | version (1 byte) | u32 LE header
length | header (UTF-8 JSON) | payload`` (a safetensors file, or nothing). The site writes to file descriptor
3 and reads file descriptor 4; stdout and stderr stay free for the program's prints.
"""

import json
import math
import struct

PROTOCOL = 1
"""The protocol version this client speaks."""

MAGIC = b"FLTS"
FRAME_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
_PREFIX = struct.Struct("<Q4sBI")  # record length, magic, frame version, header length


class ProtocolError(IOError):
    """The site sent something that is not a protocol record (or the channel ended mid-record)."""


def _readinto_exactly(f, view):
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            return got
        got += n
    return got


def read_record(f, max_bytes):
    """Reads one record: (header dict, payload bytearray) or None at a clean end of the channel."""
    prefix = bytearray(_PREFIX.size)
    got = _readinto_exactly(f, memoryview(prefix))
    if got == 0:
        return None
    if got < len(prefix):
        raise ProtocolError("the channel ended inside a record prefix")
    length, magic, version, hlen = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError("a record does not start with the FLTS magic")
    if version != FRAME_VERSION:
        raise ProtocolError(f"frame version {version} is not {FRAME_VERSION}")
    if length < 9 + hlen or hlen > MAX_HEADER_BYTES:
        raise ProtocolError(f"a record of {length} bytes cannot hold a {hlen}-byte header")
    if length > max_bytes:
        raise ProtocolError(f"a record of {length} bytes exceeds the {max_bytes}-byte limit")
    header_bytes = bytearray(hlen)
    if _readinto_exactly(f, memoryview(header_bytes)) < hlen:
        raise ProtocolError("the channel ended inside a header")
    payload = bytearray(length - 9 - hlen)
    if _readinto_exactly(f, memoryview(payload)) < len(payload):
        raise ProtocolError("the channel ended inside a payload")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"a header is not JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("t"), str):
        raise ProtocolError("a header is not an object with a type")
    return header, payload


def _finite_or_name(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def clean_metrics(metrics):
    """Metrics as the protocol writes them: floats, with non-finite values named (the site refuses them)."""
    return {str(k): _finite_or_name(v) for k, v in (metrics or {}).items()}


def write_record(f, header, parts=()):
    """Writes one record: the header (padded so that the payload starts 8-byte aligned) and payload parts."""
    js = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    js += b" " * ((-(9 + len(js))) % 8)
    if len(js) > MAX_HEADER_BYTES:
        raise ValueError(f"a header of {len(js)} bytes exceeds {MAX_HEADER_BYTES}")
    size = sum(len(memoryview(p).cast("B")) for p in parts)
    f.write(_PREFIX.pack(9 + len(js) + size, MAGIC, FRAME_VERSION, len(js)) + js)
    for p in parts:
        f.write(p)
    f.flush()
