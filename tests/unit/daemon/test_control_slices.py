"""The control server's work is bounded per loop turn, and a client that reads nothing is cut off."""
from __future__ import annotations

import json
import os
import socket

import pytest
from vswitch.daemon import loop as loopmod
from vswitch.daemon import server as servermod
from vswitch.daemon.loop import EventLoop
from vswitch.daemon.methods import CommandTable
from vswitch.daemon.server import ControlServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def control(tmp_path):
    """A server in a loop with a hand-driven clock; the test process is its own allowed peer."""
    clock = Clock()
    loop = EventLoop(clock)
    loop._timeout = lambda now: 0.0   # never sleep in real time: this clock only moves when the test moves it
    calls: list[int] = []
    table = CommandTable()
    table.register("count", lambda: calls.append(1) or len(calls))
    table.register("big", lambda: "x" * (1 << 20))
    server = ControlServer(str(tmp_path / "ctl.sock"), table, loop, allowed_uids=(os.geteuid(),))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(server.path)
    client.setblocking(False)
    try:
        yield loop, server, client, calls, clock
    finally:
        client.close()
        server.close()
        loop.close()


def turns(loop: EventLoop, clock: Clock, n: int, step: float = 0.001) -> None:
    for _request in range(n):
        clock.now += step   # 1 ms a turn: the work bucket refills 0.2 ms, more than a cheap request costs
        loop.turn()


def replies(client: socket.socket) -> list[dict]:
    data = b""
    while True:
        try:
            chunk = client.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_a_pipelined_burst_is_answered_one_request_per_turn(control):
    loop, server, client, calls, clock = control
    client.sendall(b"".join(json.dumps({"id": i, "method": "count"}).encode() + b"\n" for i in range(50)))
    turns(loop, clock, 3)   # accept, read, and the first requests
    assert 0 < len(calls) <= 3, "more than one request per loop turn"
    turns(loop, clock, 100)
    assert len(calls) == 50
    assert [r["id"] for r in replies(client)] == list(range(50))


def test_control_work_takes_at_most_its_share_of_the_loop(control, monkeypatch):
    loop, server, client, calls, clock = control
    # Each request "costs" 1 ms of the clock (less than the bucket's 5 ms burst, so the share is exact).
    table = server.methods

    def slow() -> int:
        clock.now += 0.001
        calls.append(1)
        return len(calls)
    table["slow"] = table["count"].__class__("slow", (), slow)
    client.sendall(b"".join(json.dumps({"id": i, "method": "slow"}).encode() + b"\n" for i in range(500)))
    start = clock.now
    turns(loop, clock, 400, step=0.0001)   # 40 ms of turns, plus the requests' own time
    elapsed = clock.now - start
    busy = len(calls) * 0.001
    assert len(calls) < 500, "every request was served at once"
    assert busy <= loopmod.WORK_SHARE * elapsed + loopmod.WORK_BURST + 0.001, (len(calls), elapsed)
    assert busy >= loopmod.WORK_SHARE * elapsed * 0.5, "control work still gets its share"


def test_a_client_that_reads_nothing_is_served_no_more_then_cut_off(control):
    loop, server, client, calls, clock = control
    client.sendall(b"".join(json.dumps({"id": i, "method": "big"}).encode() + b"\n" for i in range(40)))
    turns(loop, clock, 200)
    conn = next(iter(server.conns.values()))
    unread = len(conn.outbuf)
    assert unread < servermod.OUTPUT_HIGH + (2 << 20), "replies kept piling up for a client that reads nothing"
    turns(loop, clock, 50)
    assert len(conn.outbuf) == unread, "it was served while its replies were unread"
    clock.now += servermod.STALL_TIMEOUT + 1.5
    turns(loop, clock, 2)
    assert not server.conns, "the client that reads nothing was not cut off"
