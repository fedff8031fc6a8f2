"""The control socket: JSON-RPC 2.0 (``framing.py``) over a root-only Unix socket.

The socket is created mode 0600 and every connection's peer credentials
(SO_PEERCRED) are checked: only uid 0 may talk to the daemon. The server lives in the
daemon's one event loop with non-blocking sockets, and no client can slow forwarding or
exhaust the daemon: each wake-up reads a bounded chunk, requests are answered one per loop
turn (``run_slice``), a client with ``OUTPUT_HIGH`` bytes of replies unread is served no
more until it reads, one that reads nothing for ``STALL_TIMEOUT`` is cut off, and there is a
connection limit and an idle timeout. Anything malformed gets an error reply.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
import struct
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Optional

from ..errors import ValidationError, VswitchError
from ..framing import (
    APP_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PERMISSION_DENIED,
    LineBuffer,
    encode,
    error_reply,
    result_reply,
)
from .loop import HANGUP, READABLE, WRITABLE, EventLoop

if TYPE_CHECKING:   # aliases for hints only: subscripting collections.abc types needs Python 3.9
    Method = Callable[[Mapping[str, Any]], Any]

log = logging.getLogger("vswitchd.server")

MAX_REQUEST = 16 * 1024 * 1024     # one line; a 1,000-port transaction is ~200 KiB
MAX_REPLY_BACKLOG = 64 * 1024 * 1024
OUTPUT_HIGH = 4 * 1024 * 1024      # unread replies beyond which a client is served no more requests
STALL_TIMEOUT = 5.0                # seconds a client may leave its replies unread before it is cut off
READ_CHUNK = 256 * 1024            # bytes read per connection per wake-up
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 30.0


def handle_request(line: bytes, methods: Mapping[str, Method]) -> dict[str, Any]:
    """Answer one request line. Never raises: every failure becomes an error reply."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as err:
        return error_reply(None, PARSE_ERROR, f"parse error: {str(err)[:200]}")
    if not isinstance(request, dict):
        return error_reply(None, INVALID_REQUEST, "invalid request: expected a JSON object (batches are not "
                                                  "supported)")
    req_id = request.get("id")
    if not isinstance(req_id, (str, int, type(None))) or isinstance(req_id, bool):
        return error_reply(None, INVALID_REQUEST, f"invalid request: 'id' must be a string, an integer or null, "
                                                  f"not {type(req_id).__name__}")
    method = request.get("method")
    if not isinstance(method, str):
        return error_reply(req_id, INVALID_REQUEST, "invalid request: 'method' must be a string")
    func = methods.get(method)
    if func is None:
        return error_reply(req_id, METHOD_NOT_FOUND, f"method not found: {method[:100]!r}")
    params = request.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return error_reply(req_id, INVALID_PARAMS, "invalid params: 'params' must be an object")
    try:
        result = func(params)
    except ValidationError as err:   # the request is malformed: JSON-RPC's invalid params, typed details
        return error_reply(req_id, INVALID_PARAMS, f"invalid params: {err.message}", _safe(err.to_dict()))
    except VswitchError as err:
        return error_reply(req_id, APP_ERROR, err.message, _safe(err.to_dict()))
    except RecursionError:
        return error_reply(req_id, INVALID_PARAMS, "invalid params: nested too deeply")
    except Exception as err:  # noqa: BLE001 - a bug must cost one request, not the daemon
        log.exception("internal error in %s", method)
        return error_reply(req_id, INTERNAL_ERROR, f"internal error: {type(err).__name__}: {str(err)[:200]}")
    return result_reply(req_id, result)


def _safe(data: dict[str, Any]) -> dict[str, Any]:
    """Error details echo the caller's value: keep them serialisable and small."""
    try:
        text = json.dumps(data["value"])
        if len(text) > 1000:
            data["value"] = text[:1000] + "..."
    except (TypeError, ValueError, RecursionError):
        data["value"] = repr(data["value"])[:1000]
    return data


class _Conn:
    __slots__ = ("sock", "fd", "lines", "outbuf", "last", "eof", "mask", "queued", "unread_since")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.lines = LineBuffer(MAX_REQUEST)
        self.outbuf = bytearray()
        self.last = now
        self.eof = False          # the client sent its last byte (it may still read our replies)
        self.mask = READABLE      # what the epoll set watches for this connection
        self.queued = False       # in the server's queue of connections with a request to answer
        self.unread_since: Optional[float] = None   # when replies started waiting on a client that reads none

    def has_request(self) -> bool:
        return self.lines.has_line() or (self.eof and self.lines.pending())

    def served(self) -> bool:
        """Requests are answered only while the client keeps up with the replies."""
        return len(self.outbuf) < OUTPUT_HIGH


class ControlServer:
    def __init__(self, path: str, methods: Mapping[str, Method], loop: EventLoop,
                 allowed_uids: tuple[int, ...] = (0,)) -> None:
        self.path = path
        self.methods = methods
        self.loop = loop
        self.allowed_uids = allowed_uids
        self.conns: dict[int, _Conn] = {}
        self.queue: deque[_Conn] = deque()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o755, exist_ok=True)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)   # a stale socket of a previous run (systemd restarts us after kill -9)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(64)
        self.sock = sock
        loop.register(sock.fileno(), self._accept, READABLE)
        loop.add_work(self)
        loop.every(1.0, self.tick)

    def _accept(self, events: int, now: float) -> None:
        while True:
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:   # EMFILE and friends: try again on the next wake-up
                log.warning("accept failed: %s", err)
                return
            conn.setblocking(False)
            pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 struct.calcsize("3i")))
            if uid not in self.allowed_uids:
                log.warning("refused control connection from uid %d (pid %d): root only", uid, pid)
                self._reject(conn, error_reply(None, PERMISSION_DENIED, f"permission denied: uid {uid} may not "
                                                                        "control vswitchd (root only)"))
                continue
            if len(self.conns) >= MAX_CONNECTIONS:
                self._reject(conn, error_reply(None, INTERNAL_ERROR, "too many control connections; try again"))
                continue
            state = _Conn(conn, now)
            self.conns[state.fd] = state
            self.loop.register(state.fd, lambda ev, t, state=state: self.dispatch(state, ev, t), READABLE)

    @staticmethod
    def _reject(conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            conn.send(encode(reply))
        except OSError:
            pass
        conn.close()

    def dispatch(self, conn: _Conn, events: int, now: float) -> None:
        if self.conns.get(conn.fd) is not conn:   # closed (its fd number may be reused)
            return
        conn.last = now
        if events & HANGUP:
            # The client is gone both ways: nobody can read a reply, and nothing it sent unanswered is run.
            self._close(conn)
            return
        if events & READABLE:
            self._read(conn)
        if conn.outbuf:
            self._flush(conn, now)
        self._update(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            conn.eof = True
            conn.lines.discarding = False
            return
        if conn.lines.feed(data):
            self._reply(conn, error_reply(None, INVALID_REQUEST, f"request too large (over {MAX_REQUEST} "
                                                                 "bytes without a newline)"))

    # -- sliced work: one request per loop turn, so forwarding is never behind more than one ------------------
    def pending(self) -> bool:
        return bool(self.queue)

    def run_slice(self, now: float) -> None:
        conn = self.queue.popleft()
        conn.queued = False
        if self.conns.get(conn.fd) is not conn:   # closed (its fd number may be reused)
            return
        line = conn.lines.pop()
        if line is None:
            line = conn.lines.rest()   # the last request, ended by the client's hang-up
        if line.strip():
            self._reply(conn, handle_request(line, self.methods))
        if self.conns.get(conn.fd) is conn:
            self._flush(conn, now)
            self._update(conn)

    def _update(self, conn: _Conn) -> None:
        """Queue, watch or close the connection as its buffers now say."""
        if self.conns.get(conn.fd) is not conn:   # closed (its fd number may be reused)
            return
        if conn.eof and not conn.has_request() and not conn.outbuf:
            self._close(conn)
            return
        if conn.has_request() and conn.served():
            if not conn.queued:
                conn.queued = True
                self.queue.append(conn)
        wants_input = not conn.eof and conn.served() and not conn.lines.has_line()
        mask = (READABLE if wants_input else 0) | (WRITABLE if conn.outbuf else 0)
        if mask != conn.mask:
            conn.mask = mask
            self.loop.modify(conn.fd, mask)

    def _reply(self, conn: _Conn, reply: dict[str, Any]) -> None:
        try:
            body = encode(reply)
        except (TypeError, ValueError, RecursionError) as err:
            body = encode(error_reply(reply.get("id"), INTERNAL_ERROR, f"reply not serialisable: {err}"))
        if len(conn.outbuf) + len(body) > MAX_REPLY_BACKLOG:   # the client does not read its replies
            log.warning("cutting off a control client with %d bytes of replies unread", len(conn.outbuf))
            self._close(conn)
            return
        conn.outbuf += body

    def _flush(self, conn: _Conn, now: float) -> None:
        try:
            sent = conn.sock.send(conn.outbuf)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        del conn.outbuf[:sent]
        if not conn.outbuf or sent:
            conn.unread_since = None if not conn.outbuf else now
        elif conn.unread_since is None:
            conn.unread_since = now

    def _close(self, conn: _Conn) -> None:
        if self.conns.get(conn.fd) is not conn:
            return
        del self.conns[conn.fd]
        try:
            self.loop.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()

    def tick(self, now: float) -> None:
        for conn in list(self.conns.values()):
            if conn.unread_since is not None and now - conn.unread_since > STALL_TIMEOUT:
                log.warning("cutting off a control client that read none of its replies for %.0f s", STALL_TIMEOUT)
                self._close(conn)
            elif now - conn.last > IDLE_TIMEOUT:
                log.info("closing idle control connection")
                self._close(conn)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        try:
            self.loop.unregister(self.sock.fileno())
        except (OSError, ValueError):
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
