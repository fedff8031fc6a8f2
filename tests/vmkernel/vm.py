"""Run a command on another Linux kernel: Debian 12's own, in a throwaway QEMU guest.

This machine's kernel lacks bridge vlan_filtering and 802.1Q devices, so the kernel
datapath's VLAN code cannot be tested on it. The guest boots Debian's stock
``linux-image-*-amd64`` (which has both) with this machine's root filesystem shared
read-only over 9p, so it runs the very same Python, venv and checkout; only /run, /dev/shm
and the directories listed in ``writable`` are fresh tmpfs (TMPDIR is /run/tmp). The kernel
and busybox come from apt (``apt-get download``, nothing is installed on the host); QEMU is in
scripts/bootstrap.sh's test profile. Nested KVM does not work under this machine's
hypervisor, so the guest is emulated (TCG): slow, but a real kernel.

    python3 tests/vmkernel/vm.py -- uname -r          # prints the guest kernel's release
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "vmkernel"
# Loaded in the initramfs before the guest switches to the shared root: the 9p root itself,
# and what the tests need (the bridge, veth, 802.1Q for VLAN devices inside test namespaces,
# the bonding driver for the kernel datapath's bonds, tun for the internal port of a vswitchd that
# stands as a kernel bond's LACP partner).
# sch_ingress (clsact) and cls_bpf: vswitchd's GSO tc path on a kernel without tcx links.
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "bridge", "veth", "8021q", "bonding", "tun", "sch_ingress", "cls_bpf")
RC_MARK = "VMKERNEL-RC="
# Where the test suite writes inside the checkout (Ansible's local temp, see tests/conftest.py).
WRITABLE = (ROOT / ".cache" / "ansible-tmp",)

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m || echo "vmkernel: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /mnt || echo "vmkernel: no root"
mount -t proc proc /mnt/proc; mount -t sysfs sys /mnt/sys; mount -t devtmpfs dev /mnt/dev
mount -t tmpfs run /mnt/run
mkdir -p /mnt/dev/shm /mnt/dev/pts; mount -t tmpfs shm /mnt/dev/shm; mount -t devpts pts /mnt/dev/pts
mkdir -p /mnt/run/vmjob
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 job /mnt/run/vmjob || echo "vmkernel: no job"
chroot /mnt /bin/sh /run/vmjob/job.sh
echo "VMKERNEL-RC=$?"
poweroff -f
"""

JOB = """set -u
# The root filesystem is read-only here. Temporary files go to /run (a tmpfs), not /tmp: a
# tmpfs over /tmp would hide a checkout that lives under /tmp (CI may clone there).
mkdir -p /run/tmp /run/home
export TMPDIR=/run/tmp HOME=/run/home PYTHONDONTWRITEBYTECODE=1 ANSIBLE_REMOTE_TEMP=/run/tmp/.ansible-remote
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for dir in {writable}; do mount -t tmpfs tmpfs "$dir"; done
cd {cwd}
{command}
"""


@dataclass(frozen=True)
class Result:
    returncode: int
    output: str


def _run(*argv: str, cwd: Path | None = None) -> None:
    subprocess.run(argv, check=True, cwd=cwd, capture_output=True, timeout=600)


def _kernel_package() -> str:
    """The versioned image package Debian's linux-image-amd64 points at (e.g. linux-image-6.1.0-56-amd64)."""
    def depends() -> str:
        return subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True,
                              check=False).stdout

    out = depends()
    if "Depends: linux-image-" not in out:  # a fresh machine may have no package lists yet
        _run("apt-get", "update", "-qq")
        out = depends()
    found = re.findall(r"Depends: (linux-image-[0-9][^\s]*-amd64)", out)
    if not found:
        raise RuntimeError(f"apt knows no linux-image-amd64 dependency (run apt-get update?):\n{out}")
    return found[0]


def _module_order(moddir: Path) -> list[str]:
    """Paths (relative to moddir) of MODULES and their dependencies, each after what it needs."""
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _colon, needs = line.partition(":")
        deps[path] = needs.split()
    by_name = {Path(path).name.split(".ko")[0]: path for path in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for need in deps[path]:
            visit(need)
        order.append(path)
    for name in MODULES:
        if name in by_name:  # built in (=y) when absent from modules.dep
            visit(by_name[name])
    return order


def prepare(cache: Path = CACHE) -> tuple[Path, Path]:
    """(kernel, initramfs), built once into ``cache`` from Debian's packages."""
    kernel, initrd, ready = cache / "vmlinuz", cache / "initrd.gz", cache / "ready"
    # The initramfs holds INIT and MODULES: a cache built from other ones is rebuilt.
    recipe = hashlib.sha256(f"{INIT}{MODULES}".encode()).hexdigest()
    if ready.exists() and ready.read_text() == recipe:
        return kernel, initrd
    shutil.rmtree(cache, ignore_errors=True)
    debs, tree, image = cache / "debs", cache / "tree", cache / "initramfs"
    for path in (debs, tree, image / "bin", image / "lib" / "modules"):
        path.mkdir(parents=True)
    package = _kernel_package()
    _run("apt-get", "download", "-q", package, "busybox-static", cwd=debs)
    for deb in debs.glob("*.deb"):
        _run("dpkg-deb", "-x", str(deb), str(tree))
    release = package[len("linux-image-"):]
    moddir = tree / "lib" / "modules" / release
    _run("depmod", "-b", str(tree), release)
    order = _module_order(moddir)
    for path in order:
        shutil.copy(moddir / path, image / "lib" / "modules" / Path(path).name)
    (image / "modules.order").write_text("\n".join(Path(p).name for p in order) + "\n")
    shutil.copy(tree / "bin" / "busybox", image / "bin" / "busybox")
    for mount_point in ("proc", "sys", "dev", "mnt"):
        (image / mount_point).mkdir()
    (image / "init").write_text(INIT)
    (image / "init").chmod(0o755)
    shutil.copy(tree / "boot" / f"vmlinuz-{release}", kernel)
    files = subprocess.run(["find", "."], cwd=image, check=True, capture_output=True).stdout
    archive = subprocess.run([str(image / "bin" / "busybox"), "cpio", "-o", "-H", "newc"], cwd=image,
                             input=files, check=True, capture_output=True).stdout
    with open(initrd, "wb") as out:
        subprocess.run(["gzip", "-1"], input=archive, stdout=out, check=True)
    shutil.rmtree(tree)
    shutil.rmtree(debs)  # 70 MB of packages; what the guest needs is extracted
    (cache / "release").write_text(release + "\n")
    ready.write_text(recipe)
    return kernel, initrd


def run(command: str, *, cwd: Path = ROOT, writable: Sequence[Path] = WRITABLE, timeout: float = 1500,
        memory_mb: int = 2048, echo: bool = False) -> Result:
    """Boot the guest, run ``command`` (a shell line) as root in ``cwd``, return its exit status and output.

    The guest is stopped by its PID if it outlives ``timeout``.
    """
    if shutil.which("qemu-system-x86_64") is None:
        raise RuntimeError("qemu-system-x86_64 is missing; scripts/bootstrap.sh test installs qemu-system-x86")
    kernel, initrd = prepare()
    for path in writable:
        path.mkdir(parents=True, exist_ok=True)  # a mount point must exist on the read-only root
    with tempfile.TemporaryDirectory(prefix="vmkernel-") as jobdir:
        Path(jobdir, "job.sh").write_text(JOB.format(writable=" ".join(f"'{p}'" for p in writable),
                                                     cwd=f"'{cwd}'", command=command))
        argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2",
                "-m", str(memory_mb), "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
                "-kernel", str(kernel), "-initrd", str(initrd),
                "-append", "console=ttyS0 quiet panic=-1",
                "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
                "-virtfs", f"local,path={jobdir},mount_tag=job,security_model=none"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        lines: list[str] = []
        try:
            _read_console(proc, timeout, lines, echo)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return Result(124, "".join(lines) + f"\nvmkernel: guest killed after {timeout:.0f} s\n")
    out = "".join(lines)
    found = re.findall(rf"{RC_MARK}(\d+)", out)
    return Result(int(found[-1]) if found else 125, out)


class Ahead:
    """One guest run started ahead of the test that needs it, in a thread.

    The emulated guest takes minutes of TCG; started early (tests/conftest.py does it once the
    load-sensitive tests are over), it boots and runs while the namespace tests, which mostly
    wait on timers and subprocesses, go on. The test then only collects the result.
    """

    def __init__(self, command: str, timeout: float) -> None:
        self.command, self.timeout = command, timeout
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="vmkernel-ahead", daemon=True)

    def _run(self) -> None:
        try:
            self.result = run(self.command, timeout=self.timeout)
        except BaseException as err:  # reported by the test that collects it, not lost in the thread
            self.error = err

    def start(self) -> None:
        if self.thread.ident is None:
            self.thread.start()

    def wait(self) -> Result:
        self.start()
        self.thread.join(self.timeout + 120)  # run() kills the guest at its own timeout
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError(f"vmkernel: the guest run did not end within {self.timeout:.0f} s")
        return self.result


AHEAD: dict[str, Ahead] = {}


# The one guest run holds the VLAN, bond and boot checks: on this 2-core machine under load (a
# Molecule scenario and other tests beside it) it outlived 1500 s (the boot checks alone took 877 s),
# and on a fresh machine, where the Molecule images are built beside it, 3000 s (2026-12-08: its
# checks had all passed, its summary was not yet printed). CI allows 90 minutes for the whole suite.
AHEAD_TIMEOUT = 3900


def ahead(command: str, timeout: float = AHEAD_TIMEOUT) -> Ahead:
    """The one early run of ``command`` in this process (made on first ask)."""
    if command not in AHEAD:
        AHEAD[command] = Ahead(command, timeout)
    return AHEAD[command]


def _read_console(proc: subprocess.Popen, timeout: float, lines: list[str], echo: bool) -> None:
    """Collect the guest's console into ``lines`` until it powers off (echoing it if asked), within ``timeout``."""
    import selectors
    import time

    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            if not selector.select(min(left, 5.0)):
                continue
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
    proc.wait(timeout=30)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    # One argument is a shell line; several are one command, quoted as given.
    result = run(args[0] if len(args) == 1 else shlex.join(args) or "uname -r", echo=True)
    sys.exit(result.returncode)
