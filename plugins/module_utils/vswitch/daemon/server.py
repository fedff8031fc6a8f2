"""The control socket: JSON-RPC 2.0, one request per line, over a root-only Unix socket.

The socket is created mode 0600 and every connection's peer credentials
(SO_PEERCRED) are checked: only uid 0 may talk to the daemon. The server runs in the
daemon's single event loop with non-blocking sockets, bounded buffers, a connection
limit and an idle timeout, so a slow, silent or hostile client can neither block
forwarding nor exhaust the daemon; anything malformed gets an error reply.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable
from typing import Any, Optional

from ..errors import ValidationError, VswitchError

log = logging.getLogger("vswitchd.server")

MAX_REQUEST = 16 * 1024 * 1024     # one line; a 1,000-port transaction is ~200 KiB
MAX_REPLY_BACKLOG = 64 * 1024 * 1024
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 30.0
EPOLLIN, EPOLLOUT = 0x001, 0x004
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
APP_ERROR, PERMISSION_DENIED = -32000, -32001

Register = Callable[[int, Callable[[int, float], None], int], None]
Method = Callable[[dict[str, Any]], Any]


def error_reply(req_id: Any, code: int, message: str, data: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": req_id, "error": err}


def handle_request(line: bytes, methods: dict[str, Method]) -> dict[str, Any]:
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
        req_id = None
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
    except VswitchError as err:
        return error_reply(req_id, APP_ERROR, err.message, _safe(err.to_dict()))
    except RecursionError:
        return error_reply(req_id, INVALID_PARAMS, "invalid params: nested too deeply")
    except Exception as err:  # noqa: BLE001 - a bug must cost one request, not the daemon
        log.exception("internal error in %s", method)
        return error_reply(req_id, INTERNAL_ERROR, f"internal error: {type(err).__name__}: {str(err)[:200]}")
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def _safe(data: dict[str, Any]) -> dict[str, Any]:
    """Error details echo the caller's value: keep them serialisable and small."""
    try:
        text = json.dumps(data["value"])
        if len(text) > 1000:
            data["value"] = text[:1000] + "..."
    except (TypeError, ValueError, RecursionError):
        data["value"] = repr(data["value"])[:1000]
    return data


def params_only(params: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in params if k not in allowed)
    if unknown:
        raise ValidationError("params", unknown[0], f"is not a parameter of this method (allowed: "
                                                    f"{', '.join(allowed) or 'none'})")


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "last", "closing", "want_out", "discard")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.last = now
        self.closing = False
        self.want_out = False
        self.discard = False   # skipping the rest of an oversized request, up to its newline


class ControlServer:
    def __init__(self, path: str, methods: dict[str, Method], register: Register,
                 modify: Callable[[int, int], None], unregister: Callable[[int], None],
                 allowed_uids: tuple[int, ...] = (0,)) -> None:
        self.path = path
        self.methods = methods
        self._register, self._modify, self._unregister = register, modify, unregister
        self.allowed_uids = allowed_uids
        self.conns: dict[int, _Conn] = {}
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
        register(sock.fileno(), self._accept, EPOLLIN)

    def _accept(self, events: int, now: float) -> None:
        while True:
            try:
                conn, _peer = self.sock.accept()
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
            fd = conn.fileno()
            self.conns[fd] = _Conn(conn, now)
            self._register(fd, lambda ev, t, fd=fd: self.dispatch(fd, ev, t), EPOLLIN)

    @staticmethod
    def _reject(conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            conn.send(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        conn.close()

    def dispatch(self, fd: int, events: int, now: float) -> None:
        conn = self.conns.get(fd)
        if conn is None:
            return
        conn.last = now
        if events & EPOLLIN and not conn.closing:
            self._read(conn)
        if conn.outbuf:
            self._flush(conn)
        if events & 0x18 and not conn.outbuf:   # EPOLLERR | EPOLLHUP
            self._close(conn)
        elif conn.closing and not conn.outbuf:
            self._close(conn)

    def _read(self, conn: _Conn) -> None:
        for _read in range(64):
            try:
                data = conn.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                conn.closing = True
                conn.outbuf.clear()
                return
            if not data:
                conn.closing = True
                conn.discard = False
                break
            if conn.discard:
                end = data.find(b"\n")
                if end < 0:
                    continue
                conn.discard = False
                data = data[end + 1:]
            conn.inbuf += data
            if len(conn.inbuf) > MAX_REQUEST and b"\n" not in conn.inbuf:
                self._reply(conn, error_reply(None, INVALID_REQUEST, f"request too large (over {MAX_REQUEST} "
                                                                     "bytes without a newline)"))
                conn.inbuf.clear()
                conn.discard = True
        while not conn.closing or conn.inbuf:
            end = conn.inbuf.find(b"\n")
            if end < 0:
                if conn.closing and conn.inbuf.strip():   # last request without a newline
                    line = bytes(conn.inbuf)
                    conn.inbuf.clear()
                    self._reply(conn, handle_request(line, self.methods))
                break
            line = bytes(conn.inbuf[:end])
            del conn.inbuf[:end + 1]
            if line.strip():
                self._reply(conn, handle_request(line, self.methods))

    def _reply(self, conn: _Conn, reply: dict[str, Any]) -> None:
        try:
            body = json.dumps(reply, default=str).encode()
        except (TypeError, ValueError, RecursionError) as err:
            body = json.dumps(error_reply(reply.get("id"), INTERNAL_ERROR, f"reply not serialisable: {err}")).encode()
        conn.outbuf += body + b"\n"
        if len(conn.outbuf) > MAX_REPLY_BACKLOG:   # the client does not read its replies
            conn.outbuf.clear()
            conn.closing = True

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf)
            del conn.outbuf[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            conn.outbuf.clear()
            conn.closing = True
        want = bool(conn.outbuf)
        if want != conn.want_out and conn.sock.fileno() >= 0:
            conn.want_out = want
            self._modify(conn.sock.fileno(), EPOLLIN | (EPOLLOUT if want else 0))

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        self.conns.pop(fd, None)
        try:
            self._unregister(fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()

    def tick(self, now: float) -> None:
        for conn in list(self.conns.values()):
            if now - conn.last > IDLE_TIMEOUT:
                log.info("closing idle control connection")
                self._close(conn)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        try:
            self._unregister(self.sock.fileno())
        except (OSError, ValueError):
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


# -- the methods vswitchd offers ------------------------------------------------------------------------
LOG_MODULES = ("vswitchd", "vswitchd.switch", "vswitchd.ports", "vswitchd.server", "vswitchd.main")
LOG_LEVELS = {"debug": logging.DEBUG, "dbg": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
              "warn": logging.WARNING, "error": logging.ERROR, "err": logging.ERROR, "critical": logging.CRITICAL,
              "emer": logging.CRITICAL, "off": logging.CRITICAL + 10}


def _optional_name(params: dict[str, Any], key: str) -> Optional[str]:
    from .. import validate as v
    value = params.get(key)
    return None if value is None else v.ifname(key, value)


def vlog_list() -> dict[str, str]:
    return {name: logging.getLevelName(logging.getLogger(name).getEffectiveLevel()).lower()
            for name in LOG_MODULES}


def vlog_set(spec: Any) -> dict[str, str]:
    """``LEVEL`` (every module) or ``MODULE:LEVEL``, like ovs-appctl vlog/set."""
    if not isinstance(spec, str) or not spec:
        raise ValidationError("spec", spec, "must be LEVEL or MODULE:LEVEL, e.g. 'debug' or 'ports:info'")
    module, _colon, level = spec.rpartition(":")
    if level.lower() not in LOG_LEVELS:
        raise ValidationError("spec", spec, f"names an unknown level {level!r} (one of "
                                            f"{', '.join(sorted(set(LOG_LEVELS)))})")
    if module in ("", "ANY", "any"):
        targets = ["vswitchd"]
    else:
        name = module if module.startswith("vswitchd") else f"vswitchd.{module}"
        if name not in LOG_MODULES:
            raise ValidationError("spec", spec, f"names an unknown module {module!r} (one of "
                                                f"{', '.join(m.removeprefix('vswitchd.') for m in LOG_MODULES)})")
        targets = [name]
    for name in targets:
        logging.getLogger(name).setLevel(LOG_LEVELS[level.lower()])
    if targets == ["vswitchd"]:
        for name in LOG_MODULES[1:]:
            logging.getLogger(name).setLevel(logging.NOTSET)
    return vlog_list()


def make_methods(switch: Any, clock: Callable[[], float], info: dict[str, Any]) -> dict[str, Method]:
    def ping(params: dict[str, Any]) -> dict[str, Any]:
        params_only(params, ())
        return {"pong": True, **info}

    def get_state(params: dict[str, Any]) -> dict[str, Any]:
        params_only(params, ())
        return switch.state()

    def transact(params: dict[str, Any]) -> dict[str, Any]:
        params_only(params, ("changes",))
        if "changes" not in params:
            raise ValidationError("params.changes", None, "is required: a list of changes")
        return switch.transact(params["changes"])

    def fdb_show(params: dict[str, Any]) -> list[dict[str, Any]]:
        params_only(params, ("bridge",))
        return switch.fdb(_optional_name(params, "bridge"), clock())

    def fdb_flush(params: dict[str, Any]) -> dict[str, Any]:
        params_only(params, ("bridge",))
        switch.fdb_flush(_optional_name(params, "bridge"))
        return {"flushed": True}

    def port_stats(params: dict[str, Any]) -> list[dict[str, Any]]:
        params_only(params, ("bridge",))
        return switch.stats(_optional_name(params, "bridge"))

    def fdb_summary(params: dict[str, Any]) -> dict[str, Any]:
        params_only(params, ())
        return switch.fdb_summary()

    def vlog_list_method(params: dict[str, Any]) -> dict[str, str]:
        params_only(params, ())
        return vlog_list()

    def vlog_set_method(params: dict[str, Any]) -> dict[str, str]:
        params_only(params, ("spec",))
        return vlog_set(params.get("spec"))

    return {"ping": ping, "get_state": get_state, "transact": transact, "fdb_show": fdb_show,
            "fdb_flush": fdb_flush, "port_stats": port_stats, "fdb_summary": fdb_summary,
            "vlog_list": vlog_list_method, "vlog_set": vlog_set_method}
