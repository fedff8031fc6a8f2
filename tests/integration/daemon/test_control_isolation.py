"""No control-socket client can stall forwarding (issue 13 item 6).

Ping latency through the switch is measured quiet, then while hostile clients connect and
idle, send requests a byte at a time, churn connections, pipeline requests as fast as the
daemon answers, and send 5,000 ``get_state`` requests without ever reading a reply. The
p99 under attack must stay within 2x of the quiet p99, and the client that reads nothing
must be cut off. Run on both forwarding paths: the rings (every frame through the daemon's
event loop, which the control server shares) and the XDP fast path (known unicast in the
kernel; its quiet p99 is a few microseconds, where 2x is the scheduler's noise, so there the
bound is 2x or the quiet p99 plus ABSOLUTE_SLACK_MS, whichever is larger).
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest
from vswitch.daemon.fastpath import XDP_ON_VETH_ENV
from vswitchd_lab import switched_hosts

pytestmark = [pytest.mark.integration, pytest.mark.load_sensitive]

PINGS, INTERVAL, ROUNDS = 400, 0.005, 3
# Far below what a stalled event loop costs (the stall timeout is 5 s; one slow request, milliseconds).
ABSOLUTE_SLACK_MS = 0.1
RTT = re.compile(r"time=([0-9.]+) ms")


def rtts(netlab, ns: str, target: str) -> list[float]:
    out = netlab.run(ns, "ping", "-n", "-i", str(INTERVAL), "-c", str(PINGS), "-W", "1", target,
                     timeout=60, check=False).stdout
    values = sorted(float(v) for v in RTT.findall(out))
    assert len(values) >= PINGS * 0.98, f"pings were lost: {len(values)} of {PINGS} answered\n{out[-500:]}"
    return values


def p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def median(values: list[float]) -> float:
    return values[len(values) // 2]


def request(method: str, req_id: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method}).encode() + b"\n"


class Hostiles:
    """Hostile control clients on threads, all stopped (and their sockets closed) by ``stop``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []
        self.non_reader_cut_off = threading.Event()
        self.answered = 0

    def connect(self, timeout: float = 2.0) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.path)
        return sock

    def spawn(self, target) -> None:
        thread = threading.Thread(target=self._guard, args=(target,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _guard(self, target) -> None:
        try:
            target()
        except OSError:
            pass   # the daemon hung up on us: what a hostile client should expect

    def non_reader(self) -> None:
        """5,000 get_state requests, never a byte read."""
        sock = self.connect(timeout=1.0)
        burst = b"".join(request("get_state", i) for i in range(5000))
        view = memoryview(burst)
        try:
            while view and not self.done.is_set():
                try:
                    view = view[sock.send(view):]
                except TimeoutError:
                    continue   # the daemon stopped reading us: keep pushing
            while not self.done.is_set():   # hold the connection and read nothing; see whether it is cut off
                try:
                    sock.send(b" ")
                except TimeoutError:
                    pass
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            self.non_reader_cut_off.set()
        finally:
            sock.close()

    def slow_sender(self) -> None:
        sock = self.connect()
        try:
            line = request("ping")
            while not self.done.is_set():
                for byte in line:
                    if self.done.wait(0.02):
                        return
                    sock.send(bytes([byte]))
        finally:
            sock.close()

    def idler(self) -> None:
        sock = self.connect()
        try:
            self.done.wait()
        finally:
            sock.close()

    def churn(self) -> None:
        while not self.done.is_set():
            sock = self.connect()
            sock.send(b'{"id": 1, "method": "pi')
            sock.close()
            time.sleep(0.002)

    def flood_reader(self) -> None:
        """Pipelines 100 requests at a time and reads every reply: keeps the control plane always busy."""
        sock = self.connect(timeout=10)
        batch = b"".join(request("ping", i) for i in range(100))
        buf = b""
        try:
            while not self.done.is_set():
                sock.sendall(batch)
                lines = 0
                while lines < 100:
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        return
                    buf += chunk
                    lines += buf.count(b"\n")
                    buf = buf[buf.rfind(b"\n") + 1:]
                self.answered += 100
        finally:
            sock.close()

    def start(self) -> None:
        self.spawn(self.non_reader)
        for _round in range(4):
            self.spawn(self.slow_sender)
        for _round in range(16):
            self.spawn(self.idler)
        self.spawn(self.churn)
        self.spawn(self.flood_reader)
        time.sleep(0.5)   # every client is connected and at work before the measurement starts

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(10)


@pytest.mark.parametrize("datapath", ["rings", "xdp"])
def test_hostile_control_clients_do_not_slow_forwarding(netlab, vswitchd, datapath):
    sw = netlab.ns("sw")
    d, (h1, _h2) = switched_hosts(netlab, vswitchd, sw, env={"VSWITCHD_DATAPATH": datapath, XDP_ON_VETH_ENV: "1"})
    shown = d.ctl("show").stdout
    assert f"forwarding: {datapath}" in shown, shown   # the path under test is the one that serves the hosts
    assert netlab.ping_until(h1, "10.0.0.2")
    # Best of interleaved rounds, as bench/ does: this 2-core machine is shared, and one burst of someone
    # else's work in a 2 s round moves a p99 by milliseconds.
    quiet, attacked = [], []
    for _round in range(ROUNDS):
        quiet.append(rtts(netlab, h1, "10.0.0.2"))
        hostiles = Hostiles(str(d.socket))
        hostiles.start()
        try:
            attacked.append(rtts(netlab, h1, "10.0.0.2"))
            # A client that reads nothing is cut off within the stall timeout (5 s) and a tick.
            assert hostiles.non_reader_cut_off.wait(10), "the client that never reads was not cut off"
            assert hostiles.answered > 0, "the reading flooder was never served"
            start = time.monotonic()
            assert d.call("ping")["pong"] is True
            assert time.monotonic() - start < 2.0, "a well-behaved client is still answered promptly"
        finally:
            hostiles.stop()
        print(f"round {_round}: ping RTT quiet p50 {median(quiet[-1]):.3f} ms p99 {p99(quiet[-1]):.3f} ms; "
              f"with hostile clients p50 {median(attacked[-1]):.3f} ms p99 {p99(attacked[-1]):.3f} ms; "
              f"the reading flooder was served {hostiles.answered} requests")
    best_quiet, best_attacked = min(map(p99, quiet)), min(map(p99, attacked))
    limit = 2 * best_quiet if datapath == "rings" else max(2 * best_quiet, best_quiet + ABSOLUTE_SLACK_MS)
    assert best_attacked <= limit, \
        f"{datapath}: p99 {best_attacked:.3f} ms with hostile clients, {best_quiet:.3f} ms quiet (limit {limit:.3f} ms)"
    assert d.proc.poll() is None
