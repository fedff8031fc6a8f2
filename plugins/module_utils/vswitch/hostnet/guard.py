"""The guard: a detached supervisor and an applier that outlive the module and its connection.

    module ──fork──> (setsid) ──fork──> supervisor ──fork──> applier
      │ returns once the journal says "verified"          applies + verifies, writes the journal,
      │ (or "rolled_back")                                 then stays as the supervisor's backup
      └ next task, over the new path: writes the commit file with the token

The supervisor restores the snapshot when the applier fails, dies (kill -9) or overruns its
time, and when no commit arrives within ``rollback_timeout`` after verification. If the
supervisor itself dies, the applier notices (its parent changes) and takes over that duty.
A restore runs under an exclusive lock, once. Everything the processes share is in the
journal (``<state_dir>/<bridge>/journal.json``, replaced atomically), so the module, the
guard and a later run all read the same truth. Forking (rather than ``systemd-run``) keeps
the code the module already imported, which lives only in Ansible's temporary payload.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import time
import traceback
import uuid
from contextlib import contextmanager
from typing import Any, Optional

from ..errors import ConflictError, VswitchError
from . import clients, dhclient6, move_dhcp6, netops, snapshot, transaction
from .spec import HostIpSpec

STATE_DIR = "/run/openvif/hostnet"  # tmpfs: after a reboot the persisted files rule
FINAL = ("committed", "rolled_back", "restore_failed")
POLL = 0.1
STARTUP_GRACE = 10.0  # seconds a just-started journal may go without a supervisor PID


class Journal:
    def __init__(self, state_dir: str, bridge: str) -> None:
        self.dir = os.path.join(state_dir, bridge)
        self.path = os.path.join(self.dir, "journal.json")
        self.commit_path = os.path.join(self.dir, "commit")
        self.lock_path = os.path.join(self.dir, "lock")
        self.log_path = os.path.join(self.dir, "guard.log")

    def read(self) -> Optional[dict[str, Any]]:
        text = netops.read_file(self.path)
        return json.loads(text) if text else None

    @contextmanager
    def locked(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def update(self, **fields: Any) -> dict[str, Any]:
        with self.locked():
            data = self.read() or {}
            data.update(fields)
            netops.write_file_atomic(self.path, json.dumps(data, indent=1, sort_keys=True))
            return data

    def committed(self, token: str) -> bool:
        return (netops.read_file(self.commit_path) or "").strip() == token

    def log(self, message: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [{os.getpid()}] {message}\n")


def alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    # a zombie child of ours still "exists": ask /proc whether it is a zombie
    status = netops.read_file(f"/proc/{pid}/stat") or ""
    return ") Z " not in status


def apply_budget(spec: HostIpSpec) -> float:
    """The longest the applier may take: forwarding wait, DHCP, verification, and slack."""
    stp_wait = 2 * spec.forward_delay + 5 if spec.stp else 3
    dhcp_wait = spec.dhcp_timeout if spec.bootproto == "dhcp" else 0
    if spec.dhcp6 is not False:  # unset may mean yes (as the uplink had it): its link-local wait, then DHCPv6
        dhcp_wait += spec.verify_timeout + spec.dhcp_timeout
    # gateway ARP, each target, and on the IPv6 side link-local DAD, a router's answer and the gateway's
    return stp_wait + dhcp_wait + spec.verify_timeout * (4 + len(spec.verify_targets)) + 10


def stale(journal: Journal) -> Optional[dict[str, Any]]:
    """A journal left unfinished with no guard process alive (both were killed, or the host froze)."""
    data = journal.read()
    if not data or data.get("phase") in FINAL:
        return None
    if alive(data.get("supervisor_pid")) or alive(data.get("applier_pid")):
        return None
    if data.get("phase") == "started" and time.time() - data.get("started", 0) < STARTUP_GRACE:
        return None  # the supervisor is being forked and has not written its PID yet
    return data


def recover(journal: Journal) -> Optional[dict[str, Any]]:
    """Restore from an unfinished journal whose guard is gone; the change was never confirmed."""
    data = stale(journal)
    if data is None:
        return None
    _restore(journal, data, "the previous transaction's guard was gone before it finished")
    return journal.read()


def start(spec: HostIpSpec, state_dir: str, resolv_conf: str, hold: Optional[dict[str, float]] = None
          ) -> dict[str, Any]:
    """Snapshot, write the journal, and launch the detached guard; returns the journal as started."""
    journal = Journal(state_dir, spec.bridge)
    current = journal.read()
    if current and current.get("phase") not in FINAL and stale(journal) is None:
        raise ConflictError("bridge", spec.bridge, f"has a transaction in progress (token "
                                                   f"{current.get('token')}, phase {current.get('phase')}); "
                                                   "confirm it or wait for its rollback")
    recover(journal)
    with netops.iproute() as ipr:
        snap = snapshot.take(ipr, spec, resolv_conf)
    token = uuid.uuid4().hex
    try:
        os.unlink(journal.commit_path)
    except FileNotFoundError:
        pass
    data = {"token": token, "phase": "started", "spec": spec.to_dict(), "snapshot": snap, "hold": hold or {},
            "started": time.time(), "apply_budget": apply_budget(spec), "error": None, "result": None,
            "restored": None, "supervisor_pid": None, "applier_pid": None}
    with journal.locked():
        netops.write_file_atomic(journal.path, json.dumps(data, indent=1, sort_keys=True))
    _spawn_detached(journal)
    return data


def _spawn_detached(journal: Journal) -> None:
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the intermediate child exits at once; the supervisor is re-parented
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        _detach_stdio(journal.log_path)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        os.chdir("/")
        _supervise(journal)
    except BaseException:
        try:
            journal.log("supervisor crashed:\n" + traceback.format_exc())
        finally:
            os._exit(1)
    os._exit(0)


def _detach_stdio(log_path: str) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    # Nothing else inherited may stay open: a held copy of Ansible's stdout pipe would keep the
    # controller waiting for this process to end.
    os.closerange(3, 65536)


def _spec_of(data: dict[str, Any]) -> HostIpSpec:
    return HostIpSpec.from_dict(data["spec"])


def _supervise(journal: Journal) -> None:
    data = journal.update(supervisor_pid=os.getpid(), phase="applying")
    spec = _spec_of(data)
    journal.log(f"supervising transaction {data['token']} for {spec.bridge}")
    applier = os.fork()
    if applier == 0:
        _applier(journal, os.getppid())
        os._exit(0)
    journal.update(applier_pid=applier)
    deadline = time.monotonic() + data["apply_budget"]
    phase, exited = "applying", False
    while True:
        data = journal.read() or {}
        phase = data.get("phase")
        if phase in ("verified", "failed") or phase in FINAL:
            break
        if not exited:
            done, _status = os.waitpid(applier, os.WNOHANG)
            exited = done == applier
        if exited:
            data = journal.read() or {}
            if data.get("phase") in ("verified", "failed") or data.get("phase") in FINAL:
                phase = data.get("phase")
                break
            _kill(applier)
            _restore(journal, data, "the applier died before it finished (killed?)")
            return
        if time.monotonic() >= deadline:
            _kill(applier)
            _restore(journal, data, f"the applier did not finish within {data['apply_budget']:g} s")
            return
        time.sleep(POLL)
    if phase == "failed":
        _kill(applier)
        _restore(journal, data, data.get("error") or "the new configuration failed")
        return
    if phase == "verified":
        _await_commit(journal, data)
    _kill(applier)


def _await_commit(journal: Journal, data: dict[str, Any]) -> None:
    token = data["token"]
    while time.time() < data["confirm_deadline"]:
        if journal.committed(token):
            with journal.locked():
                current = journal.read() or {}
                if current.get("phase") in FINAL:
                    return
                current.update(phase="committed", committed=time.time(), dhcp_clients_started=_rehome(current))
                netops.write_file_atomic(journal.path, json.dumps(current, indent=1, sort_keys=True))
            journal.log(f"committed; DHCP clients started on the bridge: {current['dhcp_clients_started']}")
            return
        if (journal.read() or {}).get("phase") in FINAL:
            return
        time.sleep(POLL)
    _restore(journal, data, f"no confirmation from the controller within {data['spec']['rollback_timeout']:g} s "
                            "of the new configuration being verified")


def _rehome(data: dict[str, Any]) -> list[list[str]]:
    """The clients the uplink had now renew the bridge's leases, each for a family the bridge leases
    (DHCPv4 with bootproto dhcp, DHCPv6 when the move asked for it); the others stay stopped."""
    spec = _spec_of(data)
    if not spec.rehome_dhcp_clients:   # the host's network manager takes the leases over: they stay stopped
        return []
    leased = {4} if spec.bootproto == "dhcp" else set()
    if move_dhcp6.wanted(spec, data["snapshot"]):
        leased.add(6)
    started = []
    for client in data["snapshot"].get("dhcp_clients") or []:
        if not clients.families(client["argv"]) & leased:
            continue
        argv = clients.rehome(client["argv"], spec.uplink, spec.bridge)
        if 6 in leased:   # a dhclient -6 renews with the DUID the move asked with (seed leaves other clients be)
            dhclient6.seed(argv, move_dhcp6.identity(data["snapshot"], data["snapshot"]["uplink"]["mac"]))
        clients.start(argv)
        started.append(argv)
    return started


def _applier(journal: Journal, supervisor: int) -> None:
    """Apply and verify, record the outcome; then watch the supervisor and take over if it dies."""
    try:
        data = journal.read() or {}
        spec = _spec_of(data)
        holds = data.get("hold") or {}

        def hold(step: str) -> None:
            if step in holds:
                journal.update(held=step)
                time.sleep(float(holds[step]))

        with netops.iproute() as ipr:
            result = transaction.apply(ipr, spec, data["snapshot"], hold)
            after = snapshot.summary(ipr, spec, data["snapshot"]["resolv_conf_path"])
        journal.update(phase="verified", result=result, after=after,
                       confirm_deadline=time.time() + spec.rollback_timeout)
        journal.log(f"verified: {result['verified']}")
    except VswitchError as err:
        journal.update(phase="failed", error=err.message)
        journal.log(f"failed: {err.message}")
        return
    except Exception as err:  # anything else is a failure of the new configuration too
        journal.update(phase="failed", error=f"{type(err).__name__}: {err}")
        journal.log("failed:\n" + traceback.format_exc())
        return
    while True:
        data = journal.read() or {}
        if data.get("phase") in FINAL:
            return
        if os.getppid() != supervisor:
            journal.log("supervisor is gone: the applier takes over the wait for the commit")
            journal.update(supervisor_pid=os.getpid())
            _await_commit(journal, data)
            return
        time.sleep(POLL)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _restore(journal: Journal, data: dict[str, Any], reason: str) -> None:
    """Put the snapshot back, once, and record what is there now."""
    with journal.locked():
        current = journal.read() or data
        if current.get("phase") in FINAL:
            return
        spec = _spec_of(current)
        journal.log(f"rolling back: {reason}")
        try:
            with netops.iproute() as ipr:
                restored = snapshot.restore(ipr, current["snapshot"], spec)
            exact = snapshot.addresses_match(current["snapshot"], restored)
            current.update(phase="rolled_back" if exact else "restore_failed", reason=reason,
                           restored=restored, restored_exactly=exact, finished=time.time())
        except Exception as err:
            current.update(phase="restore_failed", reason=reason, restore_error=f"{type(err).__name__}: {err}",
                           finished=time.time())
            journal.log("restore failed:\n" + traceback.format_exc())
        netops.write_file_atomic(journal.path, json.dumps(current, indent=1, sort_keys=True))
    journal.log(f"{current['phase']}: {snapshot.describe(current.get('restored') or {})}")


def wait_for(journal: Journal, token: str, phases: tuple[str, ...], timeout: float) -> dict[str, Any]:
    """Poll the journal until this transaction reaches one of ``phases`` (or a final phase), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        data = journal.read() or {}
        if data.get("token") != token:
            raise ConflictError("token", token, "is not the transaction in the journal any more")
        if data.get("phase") in phases or data.get("phase") in FINAL:
            return data
        if time.monotonic() >= deadline:
            return data
        time.sleep(POLL)


def confirm(journal: Journal, token: str) -> None:
    netops.write_file_atomic(journal.commit_path, token + "\n")
