"""The control socket's wire format, shared by both ends (``rpc.Client`` and ``daemon/server.py``).

JSON-RPC 2.0, one JSON object per line. Batches are not supported. Both ends split
their input with one ``LineBuffer``, so what counts as a line (and what an oversized one
does) is decided here once. Standard library only: this file is bundled into modules.
"""
from __future__ import annotations

import json
from typing import Any, Optional

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
APP_ERROR, PERMISSION_DENIED = -32000, -32001


def encode(message: Any) -> bytes:
    """One message as one line; values JSON cannot hold are sent as their ``str``."""
    return json.dumps(message, default=str).encode() + b"\n"


def request(req_id: int, method: str, params: Optional[dict[str, Any]]) -> bytes:
    return encode({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or {}})


def result_reply(req_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def error_reply(req_id: Any, code: int, message: str, data: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": req_id, "error": err}


class LineBuffer:
    """Bytes in, complete lines out.

    With a ``limit``, a line that grows past it without a newline is dropped up to its
    newline (``feed`` returns True once when that starts), so a peer cannot make the
    buffer grow without bound.
    """

    def __init__(self, limit: Optional[int] = None) -> None:
        self.data = bytearray()
        self.start = 0            # where the next line begins: popping a line moves this, not the bytes
        self.limit = limit
        self.discarding = False   # skipping the rest of an oversized line, up to its newline

    def feed(self, chunk: bytes) -> bool:
        """Add ``chunk``; True if this made the current line oversized (it is being dropped)."""
        if self.discarding:
            end = chunk.find(b"\n")
            if end < 0:
                return False
            self.discarding = False
            chunk = chunk[end + 1:]
        if self.start:
            del self.data[:self.start]   # one move per chunk read, however many lines it held
            self.start = 0
        self.data += chunk
        if self.limit is not None and len(self.data) > self.limit and b"\n" not in self.data:
            self.data.clear()
            self.discarding = True
            return True
        return False

    def pop(self) -> Optional[bytes]:
        """The next complete line without its newline, or None when there is none yet."""
        end = self.data.find(b"\n", self.start)
        if end < 0:
            return None
        line = bytes(self.data[self.start:end])
        self.start = end + 1
        return line

    def rest(self) -> bytes:
        """What remains after the last newline (a last line the peer ended by hanging up)."""
        line = bytes(self.data[self.start:])
        self.clear()
        return line

    def has_line(self) -> bool:
        return self.data.find(b"\n", self.start) >= 0

    def pending(self) -> bool:
        """Anything but whitespace left (a last line without its newline counts)."""
        return bool(self.data[self.start:].strip())

    def clear(self) -> None:
        self.data.clear()
        self.start = 0
        self.discarding = False
