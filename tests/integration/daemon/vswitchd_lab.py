"""Helpers for vswitchd integration tests: real daemons in throwaway namespaces.

Each daemon gets its own socket and state file under the test's tmp dir, runs inside a
namespace the test made (``ip netns exec`` execs it, so the PID we hold is the daemon's),
and is stopped by that PID in a finally block.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

MODULE_UTILS = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"
RAWFRAME = Path(__file__).resolve().parent / "vswitchd_rawframe.py"
if str(MODULE_UTILS) not in sys.path:
    sys.path.insert(0, str(MODULE_UTILS))

from vswitch.rpc import Client  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(MODULE_UTILS)}


class Daemon:
    def __init__(self, ns: str, workdir: Path, fdb_limit: Optional[int] = None, name: str = "vswitchd",
                 env: Optional[dict] = None) -> None:
        self.ns = ns
        self.state_file = workdir / f"{name}.json"
        self.socket = workdir / f"{name}.sock"
        self.log = workdir / f"{name}.log"
        self.fdb_limit = fdb_limit
        self.proc: Optional[subprocess.Popen] = None
        self.env = env or {}   # extra environment of the next start (e.g. VSWITCHD_CRASH_AT)

    def start(self, timeout: float = 10.0) -> Daemon:
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "vswitch.daemon",
                "--state-file", str(self.state_file), "--socket", str(self.socket), "--log-level", "info"]
        if self.fdb_limit is not None:
            argv += ["--fdb-limit", str(self.fdb_limit)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, env={**ENV, **self.env}, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"vswitchd exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                with self.client(timeout=2) as client:
                    if client.call("ping")["pid"] == self.proc.pid:
                        return self
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"vswitchd did not answer within {timeout}s: {self.log.read_text()}")
            time.sleep(0.05)

    def client(self, timeout: float = 30) -> Client:
        return Client(str(self.socket), timeout=timeout)

    def call(self, method: str, params: Optional[dict] = None):
        with self.client() as client:
            return client.call(method, params)

    def transact(self, *changes: dict):
        return self.call("transact", {"changes": list(changes)})

    def ctl(self, *argv: str, check: bool = False, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vswitch.cli", "--socket", str(self.socket), *argv], env=ENV,
                              capture_output=True, text=True, timeout=60, check=check, input=stdin)

    def stats(self, port: str) -> dict:
        return next(r for r in self.call("port_stats") if r["port"] == port)

    def stop(self, sig: int = signal.SIGTERM) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


def ch(op: str, target: str, **args) -> dict:
    return {"op": op, "target": target, "datapath": "userspace", "args": args}


class Capture:
    """A raw-socket capture on ``iface`` in ``ns`` for ``seconds`` (tags restored from aux data)."""

    def __init__(self, lab, ns: str, iface: str, seconds: float = 2.0) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(RAWFRAME), "recv", iface,
                                      str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready", self.proc.stderr.read()

    def frames(self) -> list[bytes]:
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return [bytes.fromhex(json.loads(line)["hex"]) for line in out.splitlines() if line.strip()]


def send_raw(lab, ns: str, iface: str, frame: bytes, count: int = 1) -> None:
    lab.run(ns, sys.executable, str(RAWFRAME), "send", iface, frame.hex(), str(count))


def vlan_ids(frames: list[bytes], source: str) -> set:
    """802.1Q VIDs of the captured frames sent by MAC ``source`` (None for untagged ones)."""
    ids = set()
    wanted = bytes.fromhex(source.replace(":", ""))
    for frame in frames:
        if frame[6:12] != wanted:
            continue  # e.g. ARP retries other VMs' failed isolation pings still send
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        ids.add(struct.unpack_from("!H", frame, 14)[0] & 0x0FFF if ethertype == 0x8100 else None)
    return ids


def mac_of(lab, ns: str, iface: str) -> str:
    return lab.run(ns, "cat", f"/sys/class/net/{iface}/address").stdout.strip()


def star(lab, daemon_ns: str, hosts: int, subnet: str = "10.0.0") -> list[str]:
    """``hosts`` namespaces h1..hN, each eth0 (subnet.i/24) wired to port p<i> in the daemon's namespace."""
    names = []
    for i in range(1, hosts + 1):
        host = lab.ns(f"h{i}")
        lab.link(daemon_ns, f"p{i}", host, "eth0")
        lab.run(host, "ip", "addr", "add", f"{subnet}.{i}/24", "dev", "eth0")
        names.append(host)
    return names


def switched_hosts(lab, vswitchd, daemon_ns: str, hosts: int = 2, **daemon_kwargs):
    """``star`` plus a started daemon whose bridge br0 has every host's port p<i>: (daemon, [h1..hN])."""
    names = star(lab, daemon_ns, hosts)
    daemon = vswitchd(daemon_ns, **daemon_kwargs)
    daemon.transact(ch("add_bridge", "br0"), *[ch("add_port", f"p{i}", bridge="br0") for i in range(1, hosts + 1)])
    return daemon, names


# A TCP sink on (address, 5201) and a source sending it N bytes: each prints the byte count and SHA-256 it saw.
TCP_SINK = """
import hashlib, socket, sys
listener = socket.create_server((sys.argv[1], 5201))
conn, _ = listener.accept()
digest, total = hashlib.sha256(), 0
while chunk := conn.recv(1 << 20):
    digest.update(chunk)
    total += len(chunk)
print(total, digest.hexdigest())
"""
TCP_SOURCE = """
import hashlib, socket, sys
address, size = sys.argv[1], int(sys.argv[2])
block = bytes(range(256)) * 4096
digest, total = hashlib.sha256(), 0
with socket.create_connection((address, 5201), timeout=20) as conn:
    while total < size:
        chunk = block[:size - total]
        conn.sendall(chunk)
        digest.update(chunk)
        total += len(chunk)
print(total, digest.hexdigest())
"""


def tcp_stream(lab, src_ns: str, dst_ns: str, address: str, size: int, timeout: float = 60) -> None:
    """One TCP stream of ``size`` bytes from ``src_ns`` to ``address`` in ``dst_ns``, read to its end: every byte
    must arrive, in order (both ends' SHA-256 agree)."""
    server = subprocess.Popen(["ip", "netns", "exec", dst_ns, "timeout", str(timeout), sys.executable, "-c", TCP_SINK,
                               address], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        sent = lab.run(src_ns, "timeout", str(timeout), sys.executable, "-c", TCP_SOURCE, address, str(size),
                       timeout=timeout + 5).stdout.split()
        received = server.communicate(timeout=timeout + 5)[0].split()
    finally:
        server.kill()
        server.wait()
    assert received == sent and int(sent[0]) == size, (sent, received)
