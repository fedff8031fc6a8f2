"""Client of vswitchd's control socket (JSON-RPC 2.0, one request per line: ``framing.py``).

Used by ``vswitchctl`` and by the ``userspace`` backend. Errors the daemon reports
come back as the typed errors of ``errors.py`` (the daemon sends ``to_dict()``).
"""
from __future__ import annotations

import itertools
import json
import socket
from typing import Any, Optional

from . import paths
from .errors import BackendError, VswitchError, error_from_dict
from .framing import LineBuffer, request

DEFAULT_TIMEOUT = 60.0


class DaemonUnavailable(BackendError):
    """The control socket cannot be reached (vswitchd not running, or no permission)."""


class Client:
    def __init__(self, path: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path or paths.socket_path()
        self.timeout = timeout
        self._sock: Optional[socket.socket] = None
        self._lines = LineBuffer()
        self._ids = itertools.count(1)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError as err:
                sock.close()
                raise DaemonUnavailable("socket", self.path, f"cannot be reached ({err.strerror or err}); is "
                                                             "vswitchd running (systemctl status vswitchd)?")
            self._sock = sock
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._lines.clear()

    def call(self, method: str, params: Optional[dict[str, Any]] = None) -> Any:
        req_id = next(self._ids)
        sock = self._connect()
        try:
            sock.sendall(request(req_id, method, params))
            reply = self._read_line(sock)
        except OSError as err:
            self.close()
            raise BackendError("socket", self.path, f"lost the connection to vswitchd during {method} "
                                                    f"({err}); the change may or may not have applied") from err
        try:
            message = json.loads(reply)
        except ValueError as err:
            self.close()
            raise BackendError("socket", self.path, f"sent an unreadable reply to {method}: {err}") from err
        if "error" in message:
            raise _error(message["error"])
        if message.get("id") != req_id:
            self.close()
            raise BackendError("socket", self.path, f"answered request {message.get('id')!r}, not {req_id}")
        return message.get("result")

    def _read_line(self, sock: socket.socket) -> bytes:
        while True:
            line = self._lines.pop()
            if line is not None:
                return line
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionResetError("vswitchd closed the connection")
            self._lines.feed(data)


def _error(err: Any) -> VswitchError:
    if isinstance(err, dict):
        data = err.get("data")
        if isinstance(data, dict) and "kind" in data:
            return error_from_dict(data)
        return BackendError("vswitchd", err.get("code"), str(err.get("message", "failed")))
    return BackendError("vswitchd", None, f"sent a malformed error: {err!r}")
