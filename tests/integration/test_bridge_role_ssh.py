"""The bridge role as an operator runs it: ansible-playbook, in a controller namespace of its own,
connects with Ansible's real ssh connection plugin to the very address being moved (IPv4 or IPv6), and
the move's confirmation comes over a fresh SSH connection to the bridge.

    controller (eth0) ── ctl0 ┐
                              br0  phys: the gateway of both families (10.77.0.1, 2001:db8:77::1)
    host (eth0 → xenbr0) ─ eth0 ┘

The host runs the test's own sshd (own host key, own authorized key, stopped by PID). sshd logs each
login; the order "accepted A, A disconnected, accepted B" proves the confirmation took a new connection
after `reset_connection` closed the one the move was made over. A cut path is a rule in the
controller's namespace dropping its *new* SSH connections (the one the move runs over lives on): the
confirmation never arrives, the guard rolls back by itself, and once the rule is lifted the controller
logs in again at the old path. Names start with 'sc'; every wait is bounded.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from ansible_runner import RECAP
from netlab import sh
from test_bridge_role import GATEWAY, HOST_IP, HOST_MAC, ORIGINAL_RESOLV

NETLAB_PREFIX = "sc"   # this area's namespaces (tests/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.slow]

SSHD = "/usr/sbin/sshd"
LOGIN_RECORDS = ("/var/log/wtmp", "/var/log/lastlog", "/var/log/btmp")
GATEWAY6, HOST_IP6 = "2001:db8:77::1", "2001:db8:77::50"
CONTROLLER = {4: "10.77.0.9", 6: "2001:db8:77::9"}
HOST_ADDRESS = {4: HOST_IP, 6: HOST_IP6}
ROLLBACK_TIMEOUT = 10   # the module's minimum (hostnet/spec.py)
ACCEPTED = re.compile(r"Accepted publickey for root from (\S+) port (\d+)")
DISCONNECTED = re.compile(r"Disconnected from user root (\S+) port (\d+)")
# Only new connections to sshd are cut: the one the move was made over keeps working, as a running
# session does when the path a new one would take is broken.
CUT = ["OUTPUT", "-p", "tcp", "--dport", "22", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"]


class SshLab:
    """phys (bridge br0 with the gateways) joins the host's eth0 and the controller's eth0 on one L2."""

    def __init__(self, lab, env, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.phys, self.host, self.ctl = lab.ns("phys"), lab.ns("host"), lab.ns("ctl")
        lab.run(self.phys, "ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        lab.link(self.phys, "eth0", self.host, "eth0", up=False)
        lab.link(self.phys, "ctl0", self.ctl, "eth0", up=False)
        lab.run(self.host, "ip", "link", "set", "eth0", "address", HOST_MAC)
        for ns in (self.host, self.ctl):
            lab.run(ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=0")
        for port in ("eth0", "ctl0"):
            lab.run(self.phys, "ip", "link", "set", port, "master", "br0")
            lab.run(self.phys, "ip", "link", "set", port, "up")
        lab.run(self.phys, "ip", "link", "set", "br0", "up")
        lab.run(self.phys, "ip", "addr", "add", f"{GATEWAY}/24", "dev", "br0")
        lab.run(self.phys, "ip", "addr", "add", f"{GATEWAY6}/64", "dev", "br0", "nodad")
        lab.run(self.ctl, "ip", "addr", "add", f"{CONTROLLER[4]}/24", "dev", "eth0")
        lab.run(self.ctl, "ip", "addr", "add", f"{CONTROLLER[6]}/64", "dev", "eth0", "nodad")
        lab.run(self.host, "ip", "addr", "add", f"{HOST_IP}/24", "dev", "eth0")
        lab.run(self.host, "ip", "addr", "add", f"{HOST_IP6}/64", "dev", "eth0")
        for ns in (self.host, self.ctl):
            lab.run(ns, "ip", "link", "set", "eth0", "up")
        lab.run(self.host, "ip", "route", "add", "default", "via", GATEWAY)
        lab.run(self.host, "ip", "-6", "route", "add", "default", "via", GATEWAY6)
        self.settle()
        self.resolv = tmp / "resolv.conf"
        self.resolv.write_text(ORIGINAL_RESOLV)
        self.state_dir = tmp / "state"
        # ssh's control sockets need a short path (108 bytes), pytest's tmp_path may be longer.
        self.control_dir = Path(tempfile.mkdtemp(prefix="sc-cp-"))
        self.env = dict(env, ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.control_dir),
                        ANSIBLE_REMOTE_TMP=str(tmp / "remote-tmp"))
        self.key = tmp / "client_key"
        self.known_hosts = tmp / "known_hosts"
        self.sshd: subprocess.Popen | None = None
        self.sshd_log = tmp / "sshd.log"
        self.made_privsep_dir = False

    # -- the host's sshd --
    def start_sshd(self) -> None:
        if not os.access(SSHD, os.X_OK):
            pytest.fail(f"{SSHD} is missing: scripts/bootstrap.sh test installs openssh-server")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.tmp / "host_key"))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        (self.tmp / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        # sshd's privilege separation directory is compiled in; the package's tmpfiles make it at boot.
        if not os.path.isdir("/run/sshd"):
            os.mkdir("/run/sshd", 0o755)
            self.made_privsep_dir = True
        config = self.tmp / "sshd_config"
        config.write_text("\n".join([
            "Port 22",
            # The very addresses being moved: a listening socket is bound to an address, not to a link,
            # so it keeps accepting while the address moves from eth0 to xenbr0 and back.
            f"ListenAddress {HOST_IP}", f"ListenAddress {HOST_IP6}",
            f"HostKey {self.tmp / 'host_key'}", f"PidFile {self.tmp / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.tmp / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "Subsystem sftp /usr/lib/openssh/sftp-server", "LogLevel INFO", ""]))
        # Ansible's sessions have a pty, and sshd records pty logins in wtmp and lastlog: this sshd
        # writes them to files of its own, bound over the machine's in the mount namespace `ip netns
        # exec` gives it (mounts there do not propagate back); `exec` keeps sshd's PID the child's.
        binds = []
        for record in LOGIN_RECORDS:
            if os.path.exists(record):
                (self.tmp / Path(record).name).touch()
                binds.append(f"mount --bind {shlex.quote(str(self.tmp / Path(record).name))} {record}")
        script = " && ".join([*binds, f'exec {SSHD} -D -e -f {shlex.quote(str(config))}'])
        log = open(self.sshd_log, "ab")
        self.sshd = subprocess.Popen(["ip", "netns", "exec", self.host, "sh", "-c", script], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while "Server listening on 2001:db8:77::50" not in self.sshd_log.read_text():
            assert self.sshd.poll() is None, f"sshd exited: {self.sshd_log.read_text()}"
            assert time.monotonic() < deadline, f"sshd did not listen: {self.sshd_log.read_text()}"
            time.sleep(0.05)

    def logins(self) -> list[tuple[str, str, str]]:
        """sshd's log, as ('accepted'|'disconnected', address, port) in order."""
        events = []
        for line in self.sshd_log.read_text().splitlines():
            for kind, pattern in (("accepted", ACCEPTED), ("disconnected", DISCONNECTED)):
                found = pattern.search(line)
                if found:
                    events.append((kind, found.group(1), found.group(2)))
        return events

    def ssh(self, family: int, command: str = "true") -> subprocess.CompletedProcess:
        """A plain ssh login from the controller, as an operator's shell would do."""
        return self.lab.run(self.ctl, "ssh", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}",
                            "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                            f"root@{HOST_ADDRESS[family]}", command, check=False)

    def stop(self) -> None:
        for sock in self.control_dir.iterdir():  # Ansible's ControlPersist masters, ended by their socket
            sh("ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x", check=False)
        shutil.rmtree(self.control_dir, ignore_errors=True)
        if self.sshd:
            listener = int((self.tmp / "sshd.pid").read_text()) if (self.tmp / "sshd.pid").exists() else None
            self.sshd.terminate()   # ip netns exec and sh exec sshd: this is sshd's own PID
            try:
                self.sshd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
                self.sshd.wait(timeout=10)
            assert listener in (None, self.sshd.pid), (listener, self.sshd.pid)
            sessions = sh("pgrep", "-P", str(self.sshd.pid), check=False).stdout.split()
            for pid in sessions:  # sessions of our sshd still open (none once the masters exited)
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except ProcessLookupError:
                    pass
            self.sshd = None
        if self.made_privsep_dir:
            shutil.rmtree("/run/sshd", ignore_errors=True)

    # -- what the host has --
    def settle(self) -> None:
        """No address in duplicate detection ('tentative' for about a second), bounded."""
        deadline = time.monotonic() + 15
        while '"tentative"' in sh("ip", "-n", self.host, "-j", "addr").stdout:
            assert time.monotonic() < deadline, "IPv6 duplicate detection did not end"
            time.sleep(0.1)

    def exact(self) -> tuple[str, str, str]:
        self.settle()
        return tuple(sh("ip", "-n", self.host, "-j", *what).stdout
                     for what in (("addr",), ("route",), ("-6", "route")))

    def addresses(self, dev: str) -> list[str]:
        out = sh("ip", "-n", self.host, "-j", "addr", "show", "dev", dev, "scope", "global").stdout
        return [a["local"] for link in json.loads(out) for a in link["addr_info"] if "local" in a]

    def journal(self) -> dict:
        path = self.state_dir / "xenbr0" / "journal.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):   # not written yet, or mid-write
            return {}

    # -- Ansible over ssh, from the controller's namespace --
    def playbook(self, family: int) -> list[str]:
        inventory = self.tmp / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"hosts": {"host": {
            "ansible_host": HOST_ADDRESS[family], "ansible_connection": "ssh", "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=no",
            "ansible_python_interpreter": sys.executable}}}}))
        playbook = self.tmp / "play.yml"
        playbook.write_text(yaml.safe_dump([{"name": "bridge", "hosts": "host", "gather_facts": False,
                                             "roles": [{"role": "openvif.vswitch.bridge"}]}]))
        varfile = self.tmp / "vars.json"
        varfile.write_text(json.dumps({
            "bridge_name": "xenbr0", "bridge_uplink": "eth0", "bridge_bootproto": "static",
            "bridge_address": f"{HOST_IP}/24", "bridge_gateway": GATEWAY, "bridge_persist": False,
            "bridge_resolv_conf": str(self.resolv), "bridge_state_dir": str(self.state_dir),
            "bridge_rollback_timeout": ROLLBACK_TIMEOUT, "bridge_verify_timeout": 5}))
        return ["ip", "netns", "exec", self.ctl, "ansible-playbook", "-i", str(inventory), str(playbook),
                "-e", f"@{varfile}"]

    def play(self, family: int) -> tuple[int, str, dict]:
        proc = subprocess.run(self.playbook(family), env=self.env, capture_output=True, text=True, timeout=180,
                              check=False)
        return proc.returncode, proc.stdout + proc.stderr, recap(proc.stdout)

    def cut(self, on: bool) -> None:
        for tool in ("iptables", "ip6tables"):
            self.lab.run(self.ctl, tool, "-I" if on else "-D", *CUT)


def recap(stdout: str) -> dict:
    return {key: int(value) for _host, counters in RECAP.findall(stdout)
            for key, value in re.findall(r"(\w+)=(\d+)", counters)}


@pytest.fixture
def sshlab(netlab, ansible_env, tmp_path):
    lab = None
    try:
        lab = SshLab(netlab, ansible_env, tmp_path)
        lab.start_sshd()
        yield lab
    finally:
        if lab:
            lab.stop()
            print(f"sshd log:\n{lab.sshd_log.read_text()}")


FAMILIES = pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])


@FAMILIES
def test_move_over_ssh_is_confirmed_over_a_fresh_ssh_connection(sshlab, family):
    lab = sshlab
    start = time.monotonic()
    rc, out, stats = lab.play(family)
    took = time.monotonic() - start
    assert rc == 0 and stats.get("failed") == 0, out
    assert lab.journal()["phase"] == "committed", lab.journal()
    assert lab.addresses("eth0") == [] and sorted(lab.addresses("xenbr0")) == sorted([HOST_IP, HOST_IP6])
    # The move ran over login A; reset_connection closed it; the confirmation came over login B, which
    # could only reach the address on the bridge.
    events = lab.logins()
    kinds = [kind for kind, _address, _port in events]
    assert kinds[:3] == ["accepted", "disconnected", "accepted"], events
    (_kind_a, addr_a, port_a), (_kind_closed, _addr_closed, closed), (_kind_b, addr_b, port_b) = events[:3]
    assert addr_a == addr_b == CONTROLLER[family] and closed == port_a != port_b, events
    print(f"IPv{family}: committed in {took:.1f} s; move over {addr_a} port {port_a}, "
          f"confirmation over a new login from {addr_b} port {port_b}")
    logins = kinds.count("accepted")
    rc, out, stats = lab.play(family)
    assert rc == 0 and stats.get("changed") == 0 and stats.get("failed") == 0, out
    again = [event for event in lab.logins() if event[0] == "accepted"][logins:]
    assert again and {address for _kind, address, _port in again} == {CONTROLLER[family]}, lab.logins()


@FAMILIES
def test_cut_controller_path_rolls_back_and_the_controller_logs_in_again(sshlab, family):
    lab = sshlab
    before = lab.exact()
    start = time.monotonic()
    proc = subprocess.Popen(lab.playbook(family), env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    cut = False
    try:
        # The move's own connection is up once the guard has written its journal: from then on the
        # controller gets no new connection through.
        deadline = time.monotonic() + 60
        while not lab.journal():
            assert proc.poll() is None and time.monotonic() < deadline, "the move never started"
            time.sleep(0.02)
        lab.cut(True)
        cut = True
        deadline = time.monotonic() + 60 + ROLLBACK_TIMEOUT
        while lab.journal().get("phase") != "rolled_back":
            assert time.monotonic() < deadline and lab.journal().get("phase") != "committed", lab.journal()
            time.sleep(0.1)
        rolled_back = time.time() - (lab.journal()["confirm_deadline"] - ROLLBACK_TIMEOUT)
        logins_while_cut = lab.logins()
        lab.cut(False)
        cut = False
        out = proc.communicate(timeout=ROLLBACK_TIMEOUT + 120)[0]
    finally:
        if cut:
            lab.cut(False)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    took = time.monotonic() - start
    assert proc.returncode != 0 and "rolled back by itself" in out and "no confirmation" in out, out
    assert [event[0] for event in logins_while_cut] == ["accepted", "disconnected"], logins_while_cut
    # wait_for_connection and the report came back over a new login at the old path (the NIC).
    assert lab.logins()[2:] and lab.logins()[2][:2] == ("accepted", CONTROLLER[family]), lab.logins()
    assert lab.exact() == before
    assert lab.addresses("eth0") == [HOST_IP, HOST_IP6]
    assert lab.ssh(family, "ip -br addr show dev eth0").returncode == 0
    print(f"IPv{family}: rolled back {rolled_back:.1f} s after verification (timeout {ROLLBACK_TIMEOUT} s), "
          f"run failed as reported in {took:.1f} s; the controller logged in again over IPv{family}")
