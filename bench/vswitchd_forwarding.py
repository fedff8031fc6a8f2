"""Benchmark: vswitchd's forwarding against Open vSwitch's userspace datapath and the Linux bridge.

    python3 bench/vswitchd_forwarding.py [--duration 5] [--reps 3] [--ports 1000] [--quick]

Run as root. Everything happens in network namespaces this script creates (prefix ``vfb<hex>``):
per contender two endpoints ``a`` (10.99.0.1) and ``b`` (10.99.0.2), each wired by a veth to a
switch namespace holding:

  vswitchd      started by hand (own --state-file/--socket in a temp dir) in the switch namespace,
                bridge + 2 system ports added with vswitchctl
  ovs-netdev    Debian's ovsdb-server + ovs-vswitchd started by hand (own db/run dirs in the temp
                dir, never the system service), ovs-vswitchd inside the switch namespace,
                ``datapath_type=netdev``, other_config:userspace-tso-enable=true (see below)
  linux-bridge  the kernel bridge: the practical limit

Measured, each contender in turn, ``--reps`` rounds interleaved (best of the rounds reported):
  fps   64-byte frames (18 B UDP payload + 8 UDP + 20 IP + 14 Ethernet + 4 FCS) blasted a -> b from a
        PACKET_TX_RING (``--helper blast``, cheap per frame, so the switch is what limits); sent = a's
        eth0 tx_packets, delivered = b's eth0 rx_packets over the steady part of the run; after the
        flood a ping checks the switch still forwards (a vswitchd that stopped is restarted, reported)
  tcp   ``iperf3`` TCP a -> b, one stream
  rtt   UDP ping-pong written here (a 18-byte datagram, echoed by b), N=2000 back-to-back round
        trips after 200 warm-up ones, p50/p99 in microseconds (includes Python on both ends)
Then vswitchd's control plane: ``--ports`` tap ports added in ONE transaction by ``vswitchctl
add-ports`` (whole CLI process timed), by one ``transact`` RPC, and by the module code path
(``actions.port`` as vswitch_port runs it, without Ansible); and restart with them all: time from
exec to READY=1 (sd_notify) and to the first answer, checking every TAP is back and up.

Why userspace TSO for OVS: without it, OVS's netdev datapath reads veth frames through AF_PACKET with
no virtio-net header, so checksum-offloaded TCP segments leave it with bad checksums and TCP does not
connect at all (ping works). Enabling it is what makes OVS usable on veth; it is also its fastest.

Cleans up its namespaces and every process it started (by PID), also on failure and Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
MODULE_UTILS = ROOT / "plugins" / "module_utils"
PY = sys.executable
THIS = Path(__file__).resolve()
VENV_PY = ROOT / ".venv" / "bin" / "python"
A_IP, B_IP = "10.99.0.1", "10.99.0.2"
CONTENDERS = ("vswitchd", "ovs-netdev", "linux-bridge")


# --------------------------------------------------------------------------- helpers run inside namespaces

def helper_echo(port: int, seconds: float) -> int:
    """UDP echo on ``port`` for at most ``seconds``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.5)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, peer = sock.recvfrom(2048)
        except TimeoutError:
            continue
        sock.sendto(data, peer)
    return 0


def helper_pingpong(host: str, port: int, count: int, warmup: int, seconds: float) -> int:
    """``count`` sequential UDP round trips to ``host``; prints JSON with RTTs (µs) and losses."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    rtts: list[float] = []
    lost = 0
    seq = 0
    for i in range(warmup + count):
        if time.monotonic() > deadline:
            break
        seq += 1
        payload = seq.to_bytes(8, "big") + b"\0" * 10
        start = time.perf_counter_ns()
        sock.send(payload)
        while True:
            try:
                data = sock.recv(2048)
            except TimeoutError:
                data = None
                break
            if data[:8] == payload[:8]:
                break
        elapsed = time.perf_counter_ns() - start
        if i < warmup:
            continue
        if data is None:
            lost += 1
        else:
            rtts.append(elapsed / 1000.0)
    print(json.dumps({"rtts": rtts, "lost": lost}))
    return 0


def _checksum(data: bytes) -> int:
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def helper_blast(iface: str, dst_mac: str, dst_ip: str, seconds: float) -> int:
    """Send 64-byte frames (60 + FCS: UDP with 18 bytes of payload) to ``dst_mac`` as fast as possible.

    One PACKET_TX_RING of identical pre-built frames: re-arming a slot is one 4-byte store, and one
    send() hands every armed slot to the kernel, so the sender costs little CPU per frame and the
    switch, not Python, is what limits the rate. Bounded by ``seconds``.
    """
    import mmap
    import struct
    sol_packet, packet_version, packet_tx_ring, packet_qdisc_bypass = 263, 10, 13, 20
    frame_size, block, nframes = 256, 4096, 1024
    src_mac = bytes.fromhex(Path(f"/sys/class/net/{iface}/address").read_text().strip().replace(":", ""))
    src_ip = socket.inet_aton(A_IP)
    payload = b"\0" * 18
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src_ip, socket.inet_aton(dst_ip))
    ip = ip[:10] + _checksum(ip).to_bytes(2, "big") + ip[12:]
    frame = bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\x08\x00" + ip + udp
    assert len(frame) == 60
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(sol_packet, packet_version, 1)          # TPACKET_V2
    sock.setsockopt(sol_packet, packet_qdisc_bypass, 1)
    sock.setsockopt(sol_packet, packet_tx_ring,
                    struct.pack("IIII", block, nframes * frame_size // block, frame_size, nframes))
    ring = mmap.mmap(sock.fileno(), nframes * frame_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    sock.bind((iface, 0))
    for i in range(nframes):
        off = i * frame_size
        ring[off + 32:off + 32 + len(frame)] = frame
        struct.pack_into("I", ring, off + 4, len(frame))
    status = struct.Struct("I")
    offsets = [i * frame_size for i in range(nframes)]
    deadline = time.monotonic() + seconds
    armed = 0
    while time.monotonic() < deadline:
        for off in offsets:
            if status.unpack_from(ring, off)[0] == 0:      # TP_STATUS_AVAILABLE
                status.pack_into(ring, off, 1)              # TP_STATUS_SEND_REQUEST
                armed += 1
        try:
            sock.send(b"", socket.MSG_DONTWAIT)
        except (BlockingIOError, OSError):
            time.sleep(0)
    print(json.dumps({"armed": armed}))
    return 0


# --------------------------------------------------------------------------- the lab

def run(*argv: str, check: bool = True, timeout: float = 60, env: Optional[dict] = None,
        input: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout, env=env, input=input)


def load() -> str:
    return "/".join(Path("/proc/loadavg").read_text().split()[:3])


class Lab:
    def __init__(self) -> None:
        self.prefix = "vfb" + uuid.uuid4().hex[:6]
        self.tmp = Path(tempfile.mkdtemp(prefix=self.prefix + "-"))
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        run("ip", "netns", "add", full)
        self.namespaces.append(full)
        run("ip", "-n", full, "link", "set", "lo", "up")
        return full

    def spawn(self, argv: list[str], log: Path, env: Optional[dict] = None, **kw) -> subprocess.Popen:
        with open(log, "ab") as handle:
            proc = subprocess.Popen(argv, stdout=handle, stderr=handle, env=env, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 10) -> None:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
                proc.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def cleanup(self) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc, wait=5)
            except Exception as err:  # noqa: BLE001 - clean up as much as possible
                print(f"cleanup: pid {proc.pid}: {err}", file=sys.stderr)
        for ns in self.namespaces:
            run("ip", "netns", "del", ns, check=False)
        run("rm", "-rf", str(self.tmp), check=False)


def vs_env(sock: Optional[Path] = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(MODULE_UTILS))
    if sock is not None:
        env["VSWITCHD_SOCKET"] = str(sock)
    return env


class Vswitchd:
    def __init__(self, lab: Lab, ns: str, name: str) -> None:
        self.lab, self.ns = lab, ns
        self.state = lab.tmp / f"{name}.json"
        self.sock = lab.tmp / f"{name}.sock"
        self.log = lab.tmp / f"{name}.log"
        self.notify = lab.tmp / f"{name}.notify"
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 60) -> dict:
        """Start; returns seconds from exec to READY=1 and to the first answered ping."""
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if self.notify.exists():
            self.notify.unlink()
        notify.bind(str(self.notify))
        notify.settimeout(0.01)
        env = dict(vs_env(), NOTIFY_SOCKET=str(self.notify))
        argv = ["ip", "netns", "exec", self.ns, PY, "-m", "vswitch.daemon", "--state-file", str(self.state),
                "--socket", str(self.sock), "--log-level", "warning"]
        from vswitch.rpc import Client
        start = time.perf_counter()
        self.proc = self.lab.spawn(argv, self.log, env=env)
        ready = answered = None
        deadline = start + timeout
        try:
            while answered is None or ready is None:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vswitchd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"vswitchd not ready within {timeout}s: {self.log.read_text()[-2000:]}")
                if ready is None:
                    try:
                        if b"READY=1" in notify.recv(4096):
                            ready = time.perf_counter() - start
                    except (TimeoutError, BlockingIOError):
                        pass
                if answered is None and self.sock.exists():
                    try:
                        with Client(str(self.sock), timeout=5) as client:
                            if client.call("ping")["pid"] == self.proc.pid:
                                answered = time.perf_counter() - start
                    except Exception:  # noqa: BLE001 - not up yet
                        pass
                if answered is None:
                    time.sleep(0.002)
        finally:
            notify.close()
        return {"ready": ready, "answer": answered}

    def stop(self) -> float:
        start = time.perf_counter()
        if self.proc is not None:
            self.lab.stop(self.proc, wait=30)
        return time.perf_counter() - start

    def ctl(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run(PY, "-m", "vswitch.cli", "--socket", str(self.sock), *argv, env=vs_env(), timeout=timeout)

    def call(self, method: str, params: Optional[dict] = None, timeout: float = 120):
        from vswitch.rpc import Client
        with Client(str(self.sock), timeout=timeout) as client:
            return client.call(method, params)


class Topology:
    """a --veth-- switch namespace --veth-- b; the switch is set up by the contender."""

    def __init__(self, lab: Lab, tag: str) -> None:
        self.a, self.b, self.sw = lab.ns(f"{tag}-a"), lab.ns(f"{tag}-b"), lab.ns(f"{tag}-sw")
        for end, ip, port in ((self.a, A_IP, "pa"), (self.b, B_IP, "pb")):
            run("ip", "-n", self.sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", end)
            run("ip", "-n", end, "addr", "add", f"{ip}/24", "dev", "eth0")
            run("ip", "-n", end, "link", "set", "eth0", "up")
            run("ip", "-n", self.sw, "link", "set", port, "up")


FWD_DAEMON: list[Vswitchd] = []


def setup_vswitchd(lab: Lab, topo: Topology) -> list[subprocess.Popen]:
    daemon = Vswitchd(lab, topo.sw, "fwd")
    FWD_DAEMON.append(daemon)
    daemon.start()
    daemon.ctl("add-br", "br0")
    daemon.ctl("add-port", "br0", "pa")
    daemon.ctl("add-port", "br0", "pb")
    return [daemon.proc]


def revive_vswitchd() -> list[int]:
    """Restart the forwarding vswitchd (state restored from its file) after it stopped forwarding."""
    daemon = FWD_DAEMON[0]
    daemon.stop()
    daemon.start()
    return [daemon.proc.pid]


def setup_ovs(lab: Lab, topo: Topology) -> list[subprocess.Popen]:
    for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"):
        if run("which", tool, check=False).returncode:
            raise RuntimeError(f"{tool} missing: apt-get install openvswitch-switch")
    d = lab.tmp / "ovs"
    d.mkdir()
    env = dict(os.environ, OVS_RUNDIR=str(d), OVS_LOGDIR=str(d), OVS_DBDIR=str(d))
    db, sock = d / "conf.db", d / "db.sock"
    run("ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema", env=env)
    server = lab.spawn(["ip", "netns", "exec", topo.sw, "ovsdb-server", str(db), f"--remote=punix:{sock}",
                        f"--unixctl={d}/ovsdb.ctl", f"--pidfile={d}/ovsdb.pid", f"--log-file={d}/ovsdb.log"],
                       d / "ovsdb.out", env=env)
    vsctl = ["ovs-vsctl", f"--db=unix:{sock}", "--timeout=30"]
    deadline = time.monotonic() + 20
    while run(*vsctl, "--no-wait", "init", check=False, env=env).returncode:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ovsdb-server did not start: {(d / 'ovsdb.out').read_text()[-2000:]}")
        time.sleep(0.1)
    run(*vsctl, "--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true", env=env)
    vswitchd = lab.spawn(["ip", "netns", "exec", topo.sw, "ovs-vswitchd", f"unix:{sock}", f"--unixctl={d}/vsd.ctl",
                          f"--pidfile={d}/vsd.pid", f"--log-file={d}/vsd.log"], d / "vsd.out", env=env)
    run(*vsctl, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", env=env)
    run(*vsctl, "add-port", "br0", "pa", "--", "add-port", "br0", "pb", env=env)
    if vswitchd.poll() is not None:
        raise RuntimeError(f"ovs-vswitchd exited: {(d / 'vsd.log').read_text()[-2000:]}")
    return [server, vswitchd]


def setup_bridge(lab: Lab, topo: Topology) -> list[subprocess.Popen]:
    run("ip", "-n", topo.sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
    run("ip", "-n", topo.sw, "link", "set", "pa", "master", "br0")
    run("ip", "-n", topo.sw, "link", "set", "pb", "master", "br0")
    run("ip", "-n", topo.sw, "link", "set", "br0", "up")
    return []


SETUP = {"vswitchd": setup_vswitchd, "ovs-netdev": setup_ovs, "linux-bridge": setup_bridge}


# --------------------------------------------------------------------------- measurements

def iperf(lab: Lab, topo: Topology, extra: list[str], duration: float) -> dict:
    server = lab.spawn(["ip", "netns", "exec", topo.b, "iperf3", "-s", "-1", "-p", "5201"], lab.tmp / "iperf-s.log")
    try:
        for _attempt in range(20):
            try:
                proc = run("ip", "netns", "exec", topo.a, "iperf3", "-c", B_IP, "-p", "5201", "-J",
                           "-t", str(duration), "--connect-timeout", "3000", *extra,
                           check=False, timeout=duration + 20)
            except subprocess.TimeoutExpired:
                return {"error": f"iperf3 client hung (> {duration + 20:g} s), killed"}
            try:
                result = json.loads(proc.stdout)
            except ValueError:
                result = {"error": proc.stderr.strip() or "no output"}
            if "Connection refused" not in str(result.get("error", "")):
                return result
            time.sleep(0.1)
        return result
    finally:
        lab.stop(server, wait=5)


def counter(ns: str, name: str) -> int:
    return int(run("ip", "netns", "exec", ns, "cat", f"/sys/class/net/eth0/statistics/{name}").stdout)


def measure_fps(lab: Lab, topo: Topology, duration: float) -> dict:
    """64-byte frames blasted a -> b (helper_blast); rates from the interfaces' counters, steady part only.

    Sent = frames a's eth0 transmitted into the switch, delivered = frames b's eth0 received. The
    frames go to b's MAC (learned beforehand) and an unused UDP port of b (the kernel drops them).
    """
    b_mac = run("ip", "netns", "exec", topo.b, "cat", "/sys/class/net/eth0/address").stdout.strip()
    run("ip", "netns", "exec", topo.a, "ping", "-c", "1", "-W", "1", B_IP, check=False)   # (re)learn both MACs
    blaster = lab.spawn(["ip", "netns", "exec", topo.a, PY, str(THIS), "--helper", "blast", "eth0", b_mac, B_IP,
                         str(duration)], lab.tmp / "blast.log", stdin=subprocess.DEVNULL)
    try:
        time.sleep(min(1.0, duration / 4))
        t1, tx1, rx1 = time.monotonic(), counter(topo.a, "tx_packets"), counter(topo.b, "rx_packets")
        time.sleep(duration * 0.6)
        t2, tx2, rx2 = time.monotonic(), counter(topo.a, "tx_packets"), counter(topo.b, "rx_packets")
        try:
            blaster.wait(duration + 15)
        except subprocess.TimeoutExpired:
            pass
        sent, got = (tx2 - tx1) / (t2 - t1), (rx2 - rx1) / (t2 - t1)
        out = {"fps": got, "sent_fps": sent, "loss": 100.0 * (1 - got / sent) if sent else 0.0}
        if sent < 1000:
            out["error"] = f"the blaster sent nothing: {(lab.tmp / 'blast.log').read_text()[-300:]}"
        return out
    finally:
        lab.stop(blaster, wait=3)


def measure_tcp(lab: Lab, topo: Topology, duration: float) -> dict:
    res = iperf(lab, topo, [], duration)
    if res.get("error"):
        return {"error": res["error"]}
    return {"gbps": res["end"]["sum_received"]["bits_per_second"] / 1e9,
            "retr": res["end"]["sum_sent"].get("retransmits")}


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure_rtt(lab: Lab, topo: Topology, count: int) -> dict:
    echo = lab.spawn(["ip", "netns", "exec", topo.b, PY, str(THIS), "--helper", "echo", "7777", "120"],
                     lab.tmp / "echo.log", stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        proc = run("ip", "netns", "exec", topo.a, PY, str(THIS), "--helper", "pingpong", B_IP, "7777", str(count),
                   "200", "60", check=False, timeout=90)
        if proc.returncode:
            return {"error": proc.stderr.strip()[-300:]}
        data = json.loads(proc.stdout)
        rtts = data["rtts"]
        if len(rtts) < count // 2:
            return {"error": f"only {len(rtts)} of {count} round trips answered"}
        return {"p50": pct(rtts, 50), "p99": pct(rtts, 99), "mean": statistics.fmean(rtts), "lost": data["lost"],
                "n": len(rtts)}
    finally:
        lab.stop(echo, wait=5)


def connectivity(topo: Topology) -> Optional[str]:
    for _attempt in range(3):
        if run("ip", "netns", "exec", topo.a, "ping", "-c", "2", "-i", "0.2", "-W", "1", B_IP,
               check=False).returncode == 0:
            return None
    return "no connectivity a -> b (ping)"


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- 1,000 ports

def bench_ports(lab: Lab, nports: int, restarts: int) -> dict:
    ns = lab.ns("ports")
    daemon = Vswitchd(lab, ns, "ports")
    out: dict = {"empty_start": daemon.start()}
    names = [f"t{i}" for i in range(nports)]

    def wait_gone(timeout: float = 30) -> None:
        """del-br closes TAPs in the background: wait until none of them is left."""
        deadline = time.monotonic() + timeout
        wanted = set(names) | {"br0"}
        while time.monotonic() < deadline:
            links = run("ip", "-n", ns, "-o", "link", "show").stdout.splitlines()
            if not any(line.split(":")[1].strip().split("@")[0] in wanted for line in links):
                return
            time.sleep(0.05)
        raise RuntimeError("TAPs still present 30 s after del-br")

    def taps_up() -> int:
        lines = run("ip", "-n", ns, "-o", "link", "show", "up").stdout.splitlines()
        return sum(1 for line in lines if line.split(":")[1].strip().split("@")[0] in set(names))

    def check(what: str) -> None:
        state = daemon.call("get_state")
        have = len([p for p in state["ports"].values() if p["bridge"] == "br0"])
        up = taps_up()
        if have != nports or up != nports:
            raise RuntimeError(f"{what}: {have} ports configured, {up} TAPs up, want {nports}")

    # 1. vswitchctl add-ports: one CLI process, one transaction
    daemon.ctl("add-br", "br0")
    start = time.perf_counter()
    daemon.ctl("add-ports", "br0", *names, "--type", "tap")
    out["vswitchctl"] = time.perf_counter() - start
    check("vswitchctl add-ports")

    # 2. restarts with every port back in service
    out["restarts"] = []
    for _restart in range(restarts):
        stop = daemon.stop()
        times = daemon.start(timeout=120)
        check("restart")
        out["restarts"].append({**times, "stop": stop})

    # 3. one transact RPC from an already connected client
    daemon.ctl("del-br", "br0")
    wait_gone()
    daemon.ctl("add-br", "br0")
    changes = [{"op": "add_port", "target": n, "datapath": "userspace", "args": {"bridge": "br0", "type": "tap"}}
               for n in names]
    from vswitch.rpc import Client
    with Client(str(daemon.sock), timeout=120) as client:
        client.call("ping")
        start = time.perf_counter()
        client.call("transact", {"changes": changes})
        out["rpc"] = time.perf_counter() - start
    check("rpc transact")

    # 4. the module code path: read, plan, one transaction (what vswitch_port does, without Ansible)
    daemon.ctl("del-br", "br0")
    wait_gone()
    worker = (
        "import json, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from vswitch import actions\n"
        "from vswitch.backends import open_host\n"
        "actions.bridge({'name': 'br0', 'state': 'present', 'datapath': 'userspace'}, open_host(), False)\n"
        "ports = [{'name': n, 'bridge': 'br0', 'type': 'tap'} for n in sys.argv[1:]]\n"
        "start = time.perf_counter()\n"
        "res = actions.port({'ports': ports, 'bridge': 'br0'}, open_host(), False)\n"
        "end = time.perf_counter()\n"
        "again = actions.port({'ports': ports, 'bridge': 'br0'}, open_host(), False)\n"
        "print(json.dumps({'seconds': end - start, 'changed': res.changed, 'idempotent': not again.changed,"
        " 'again': time.perf_counter() - end, 'import': start - t0}))\n"
    )
    start = time.perf_counter()
    module_py = str(VENV_PY) if VENV_PY.exists() else PY   # the modules need pyroute2 (kernel backend)
    proc = run("ip", "netns", "exec", ns, module_py, "-c", worker, *names, env=vs_env(daemon.sock), timeout=300,
               check=False)
    wall = time.perf_counter() - start
    if proc.returncode:
        out["module"] = {"error": proc.stderr.strip()[-500:]}
    else:
        out["module"] = {**json.loads(proc.stdout), "process": wall}
        check("module path")
    out["stop"] = daemon.stop()
    return out


# --------------------------------------------------------------------------- report

def ratio(x: Optional[float], y: Optional[float]) -> str:
    if not x or not y:
        return "n/a"
    return f"{x / y:.2f}x"


def best(rows: list[dict], key: str, lowest: bool = False) -> Optional[float]:
    values = [r[key] for r in rows if key in r]
    if not values:
        return None
    return min(values) if lowest else max(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per TCP and 64-byte run (default 5)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved rounds, best reported (default 3)")
    parser.add_argument("--pings", type=int, default=2000, help="round trips for latency (default 2000)")
    parser.add_argument("--ports", type=int, default=1000, help="ports for the control-plane part (default 1000)")
    parser.add_argument("--restarts", type=int, default=3, help="daemon restarts with --ports ports (default 3)")
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 round, 1 restart")
    parser.add_argument("--only", choices=("forwarding", "ports"), help="run only one part")
    parser.add_argument("--rev", help="benchmark vswitchd as committed at this git revision (e.g. HEAD) instead "
                                      "of the working tree")
    parser.add_argument("--helper", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.helper:
        kind, *rest = args.helper
        if kind == "blast":
            return helper_blast(rest[0], rest[1], rest[2], float(rest[3]))
        if kind == "echo":
            return helper_echo(int(rest[0]), float(rest[1]))
        return helper_pingpong(rest[0], int(rest[1]), int(rest[2]), int(rest[3]), float(rest[4]))
    if args.quick:
        args.duration, args.reps, args.restarts = 2.0, 1, 1
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces)")
    global MODULE_UTILS
    snapshot = None
    if args.rev:
        # A committed version of vswitchd, not the working tree (which may be mid-edit).
        snapshot = Path(tempfile.mkdtemp(prefix="vfb-src-"))
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev, "plugins/module_utils"],
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(snapshot)], input=archive.stdout, check=True)
        MODULE_UTILS = snapshot / "plugins" / "module_utils"
    for tool in ("iperf3", "ip"):
        if run("which", tool, check=False).returncode:
            sys.exit(f"{tool} is missing (apt-get install {'iperf3' if tool == 'iperf3' else 'iproute2'})")
    sys.path.insert(0, str(MODULE_UTILS))

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)    # also when started in the background (SIGINT ignored)

    lab = Lab()
    print(f"vswitchd forwarding benchmark  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  prefix {lab.prefix}")
    ovs = run("sh", "-c", "ovs-vswitchd --version 2>/dev/null | head -1", check=False).stdout.strip() or "no OVS"
    commit = run("git", "-C", str(ROOT), "log", "-1", "--format=%h %cI", *([args.rev] if args.rev else []), "--",
                 "plugins/module_utils/vswitch/daemon", check=False).stdout.strip()
    dirty = not args.rev and run("git", "-C", str(ROOT), "status", "--porcelain", "--",
                                 "plugins/module_utils/vswitch/daemon", check=False).stdout.strip()
    print(f"host: {os.cpu_count()} cores, load average {load()} at start; python {sys.version.split()[0]}; {ovs}")
    print(f"vswitchd: daemon/ last changed in commit {commit or '?'}"
          f"{' + uncommitted changes (working tree)' if dirty else ''}"
          f"{f' (snapshot of {args.rev})' if args.rev else ''}")
    print(f"settings: {args.duration:g}s per TCP/64-byte run, {args.reps} interleaved round(s), best of rounds "
          f"reported; latency = UDP ping-pong (Python both ends), {args.pings} round trips")
    try:
        results: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
        failed: dict[str, str] = {}
        if args.only != "ports":
            topos: dict[str, Topology] = {}
            pids: dict[str, list[int]] = {}
            for tag, name in zip(("vs", "ovs", "lb"), CONTENDERS, strict=True):
                topos[name] = Topology(lab, tag)
                try:
                    pids[name] = [p.pid for p in SETUP[name](lab, topos[name])]
                    err = connectivity(topos[name])
                    if err:
                        failed[name] = err
                except Exception as err:  # noqa: BLE001 - report the contender as failed, go on
                    failed[name] = str(err)[-500:]
            for rnd in range(args.reps):
                for name in CONTENDERS:
                    if name in failed:
                        continue
                    topo = topos[name]
                    row: dict = {"round": rnd + 1, "load": load()}
                    tcp = measure_tcp(lab, topo, args.duration)
                    rtt = measure_rtt(lab, topo, args.pings)
                    cpu0 = cpu_seconds(pids[name])
                    t0 = time.monotonic()
                    fps = measure_fps(lab, topo, args.duration)
                    switch_cpu = (cpu_seconds(pids[name]) - cpu0) / (time.monotonic() - t0)
                    for part in (tcp, rtt, fps):
                        if "error" in part:
                            row.setdefault("errors", []).append(part.pop("error"))
                        if part.get("note"):
                            row.setdefault("errors", []).append(part.pop("note"))
                        row.update(part)
                    if connectivity(topo):
                        row.setdefault("errors", []).append("STOPPED FORWARDING after the 64-byte flood")
                        if name == "vswitchd":
                            pids[name] = revive_vswitchd()
                            row["errors"].append("restarted for the next round")
                        else:
                            failed[name] = "stopped forwarding after the 64-byte flood"
                    if pids[name]:
                        row["switch_cpu"] = switch_cpu
                    results[name].append(row)
                    print(f"  round {rnd + 1} {name:12s} load {row['load']:>14s}  "
                          f"fps {row.get('fps', 0):>9,.0f} (sent {row.get('sent_fps', 0):>9,.0f}, "
                          f"loss {row.get('loss', 0):5.1f}%)  tcp {row.get('gbps', 0):6.2f} Gbit/s  "
                          f"rtt p50 {row.get('p50', 0):6.1f} p99 {row.get('p99', 0):7.1f} us"
                          + (f"  switch cpu {row['switch_cpu']:.0%}" if "switch_cpu" in row else "")
                          + (f"  ERRORS {row['errors']}" if row.get("errors") else ""), flush=True)
            print()
            print(f"{'forwarding (best of rounds)':30s} {'64B fps':>12s} {'loss':>7s} {'TCP Gbit/s':>11s} "
                  f"{'p50 us':>8s} {'p99 us':>8s}")
            summary = {}
            for name in CONTENDERS:
                rows = results[name]
                if name in failed:
                    print(f"  {name:28s} FAILED: {failed[name]}")
                    continue
                summary[name] = {"fps": best(rows, "fps"), "gbps": best(rows, "gbps"),
                                 "p50": best(rows, "p50", True), "p99": best(rows, "p99", True)}
                fps_row = max((r for r in rows if "fps" in r), key=lambda r: r["fps"], default={})
                s = summary[name]
                stopped = sum(1 for r in rows if any("STOPPED" in e for e in r.get("errors", ())))
                print(f"  {name:28s} {s['fps'] or 0:>12,.0f} {fps_row.get('loss', 0):>6.1f}% {s['gbps'] or 0:>11.2f} "
                      f"{s['p50'] or 0:>8.1f} {s['p99'] or 0:>8.1f}"
                      + (f"  stopped forwarding after the flood in {stopped}/{len(rows)} rounds" if stopped else ""))
            vs, ovs, lb = (summary.get(c, {}) for c in CONTENDERS)
            print()
            print("ratios                          fps      TCP      p99 (lower is better)")
            print(f"  vswitchd / ovs-netdev        {ratio(vs.get('fps'), ovs.get('fps')):>7s}  "
                  f"{ratio(vs.get('gbps'), ovs.get('gbps')):>7s}  {ratio(vs.get('p99'), ovs.get('p99')):>7s}")
            print(f"  vswitchd / linux-bridge      {ratio(vs.get('fps'), lb.get('fps')):>7s}  "
                  f"{ratio(vs.get('gbps'), lb.get('gbps')):>7s}  {ratio(vs.get('p99'), lb.get('p99')):>7s}")
            print(f"  ovs-netdev / linux-bridge    {ratio(ovs.get('fps'), lb.get('fps')):>7s}  "
                  f"{ratio(ovs.get('gbps'), lb.get('gbps')):>7s}  {ratio(ovs.get('p99'), lb.get('p99')):>7s}")

            def goal(ok: Optional[bool]) -> str:
                return "n/a" if ok is None else ("MET" if ok else "NOT MET")

            def cmp(key: str, factor: float, lower: bool = False) -> Optional[bool]:
                x, y = vs.get(key), ovs.get(key)
                if not x or not y:
                    return None
                return x < y if lower else x >= factor * y
            print("goals")
            print(f"  fps  vswitchd >= 1.5x ovs-netdev: {goal(cmp('fps', 1.5))}")
            print(f"  TCP  vswitchd >= 2x ovs-netdev:   {goal(cmp('gbps', 2.0))}")
            print(f"  p99  vswitchd < ovs-netdev:       {goal(cmp('p99', 1.0, lower=True))}")
        if args.only != "forwarding":
            print()
            print(f"control plane: {args.ports} tap ports on one vswitchd bridge (load {load()})")
            ports = bench_ports(lab, args.ports, args.restarts)
            print(f"  empty daemon start: READY {ports['empty_start']['ready']:.3f}s, "
                  f"first answer {ports['empty_start']['answer']:.3f}s")
            print(f"  vswitchctl add-ports (1 transaction, whole CLI process): {ports['vswitchctl']:.3f}s  "
                  f"goal < 2 s: {'MET' if ports['vswitchctl'] < 2 else 'NOT MET'}")
            print(f"  transact RPC (connected client):                         {ports['rpc']:.3f}s")
            mod = ports["module"]
            if "error" in mod:
                print(f"  module path: FAILED {mod['error']}")
            else:
                print(f"  module path actions.port (read+plan+apply):             {mod['seconds']:.3f}s  "
                      f"goal < 2 s: {'MET' if mod['seconds'] < 2 else 'NOT MET'}  (process incl. imports and "
                      f"bridge: {mod['process']:.3f}s; re-run unchanged: {mod['again']:.3f}s, "
                      f"idempotent: {mod['idempotent']})")
            for i, r in enumerate(ports["restarts"], 1):
                print(f"  restart {i}: stop {r['stop']:.3f}s, exec -> READY=1 {r['ready']:.3f}s, "
                      f"-> first answer {r['answer']:.3f}s (all {args.ports} TAPs back and up)")
            best_ready = min(max(r["ready"], r["answer"]) for r in ports["restarts"])
            print(f"  restart, best of {len(ports['restarts'])} (exec -> READY and answering): {best_ready:.3f}s  "
                  f"goal < 2 s: {'MET' if best_ready < 2 else 'NOT MET'}")
            print(f"  stop with {args.ports} ports (SIGTERM -> exit), at the end: {ports['stop']:.3f}s")
        print(f"\nload average at end: {load()}")
    except KeyboardInterrupt as err:
        print(f"interrupted ({err}); cleaning up", file=sys.stderr)
        return 130
    finally:
        lab.cleanup()
        if snapshot is not None:
            run("rm", "-rf", str(snapshot), check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
