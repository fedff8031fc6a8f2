"""The control protocol: every malformed or hostile request gets an error reply, the daemon survives."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from vswitch.daemon.methods import vlog_list, vlog_set
from vswitch.daemon.server import MAX_CONNECTIONS, handle_request
from vswitch.errors import NotFoundError, ValidationError
from vswitch.rpc import Client, DaemonUnavailable
from vswitchd_frames import MODULE_UTILS


def methods():
    def boom(params):
        raise ZeroDivisionError("bug")

    def missing(params):
        raise NotFoundError("bridge", params.get("bridge"), "is not a bridge of vswitchd")
    return {"echo": lambda params: params, "boom": boom, "missing": missing}


def ask(line):
    return handle_request(line if isinstance(line, bytes) else line.encode(), methods())


@pytest.mark.parametrize("line, code", [
    (b"{not json", -32700),
    (b"\xff\xfe\x00garbage", -32700),
    (b"[" * 100000 + b"]" * 100000, -32700),
    (b'[{"method": "echo"}]', -32600),
    (b'"a string"', -32600),
    (b'{"id": 1}', -32600),
    (b'{"id": 1, "method": 42}', -32600),
    (b'{"id": 1, "method": "nope"}', -32601),
    (b'{"id": 1, "method": "echo", "params": [1, 2]}', -32602),
    (b'{"id": 1, "method": "boom"}', -32603),
    (b'{"id": 1, "method": "echo", "params": {"n": 1' + b"0" * 10000 + b"}}", -32700),
])
def test_malformed_requests_get_error_replies(line, code):
    reply = ask(line)
    assert reply["error"]["code"] == code
    json.dumps(reply)


def test_typed_errors_cross_the_socket_as_dicts():
    reply = ask('{"jsonrpc": "2.0", "id": "x", "method": "missing", "params": {"bridge": "br9"}}')
    assert reply["id"] == "x"
    assert reply["error"]["data"]["kind"] == "not_found"
    assert reply["error"]["data"]["field"] == "bridge"


def test_a_good_request_echoes_its_id():
    assert ask('{"jsonrpc": "2.0", "id": 7, "method": "echo", "params": {"a": 1}}') == \
        {"jsonrpc": "2.0", "id": 7, "result": {"a": 1}}


def test_vlog_set_and_list():
    try:
        assert vlog_set("ports:debug")["vswitchd.ports"] == "debug"
        assert vlog_set("warn")["vswitchd.ports"] == "warning"
        for bad in ("", "loud", "nosuchmodule:info", 5):
            with pytest.raises(ValidationError):
                vlog_set(bad)
    finally:
        vlog_set("info")
    assert set(vlog_list().values()) == {"info"}


@pytest.fixture
def daemon(tmp_path):
    """A real vswitchd process with no bridges (needs no privileges): its control plane only."""
    sock = tmp_path / "ctl.sock"
    env = {**os.environ, "PYTHONPATH": str(MODULE_UTILS)}
    proc = subprocess.Popen([sys.executable, "-m", "vswitch.daemon", "--state-file", str(tmp_path / "state.json"),
                             "--socket", str(sock), "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "vswitchd did not create its socket"
            time.sleep(0.05)
        yield proc, str(sock)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def raw(path, data: bytes, read=True, timeout=5.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        try:
            s.sendall(data)
            if read:
                s.shutdown(socket.SHUT_WR)
        except BrokenPipeError:   # the daemon hung up on an oversized request; its reply is still queued
            pass
        if not read:
            return b""
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_hostile_clients_never_crash_or_wedge_the_daemon(daemon):
    proc, path = daemon
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    # Garbage, binary, half a request then hang-up, an oversized line, a flood of connections.
    assert b'"code": -32700' in raw(path, b"\x00\xff garbage\n")
    raw(path, b'{"jsonrpc": "2.0", "id": 1, "meth', read=False)
    big = raw(path, b"x" * (17 * 1024 * 1024))
    assert b"too large" in big
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _conn in range(MAX_CONNECTIONS)]
    try:
        for s in idle:
            s.connect(path)
            s.sendall(b'{"id": 1, "method": "ping"')   # never finished
        # Over the connection limit, a new client is told so instead of hanging.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as extra:
            extra.settimeout(5)
            extra.connect(path)
            assert b"too many" in extra.recv(4096)
    finally:
        for s in idle:
            s.close()
    # Once the daemon has seen those hang-ups, there is room again (bounded wait).
    deadline = time.monotonic() + 10
    while True:
        try:
            with Client(path, timeout=5) as client:
                client.call("ping")
            break
        except Exception:  # noqa: BLE001 - still full
            assert time.monotonic() < deadline, "connections were never released"
            time.sleep(0.05)
    # Replies to a pipelined burst come back in order; the daemon is alive and answering.
    burst = b"".join(json.dumps({"id": i, "method": "ping"}).encode() + b"\n" for i in range(200))
    replies = [json.loads(line) for line in raw(path, burst).splitlines()]
    assert [r["id"] for r in replies] == list(range(200))
    with Client(path, timeout=5) as client:
        assert client.call("ping")["pong"] is True
        with pytest.raises(ValidationError):
            client.call("transact", {"changes": [{"op": "add_bridge", "target": "bad/name"}]})
        with pytest.raises(ValidationError):
            client.call("ping", {"unexpected": 1})
        assert client.call("get_state")["bridges"] == {}
    assert proc.poll() is None


def test_client_reports_a_missing_daemon(tmp_path):
    with pytest.raises(DaemonUnavailable) as err:
        Client(str(tmp_path / "none.sock"), timeout=1).call("ping")
    assert "is vswitchd running" in err.value.message
