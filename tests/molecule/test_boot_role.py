"""The boot role's unit and NetworkManager drop-in, rendered by Ansible as the role does (fast, no podman)."""
from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "boot"


def _render(tmp_path: Path, template: str, **overrides: object) -> str:
    out = tmp_path / template.replace(".j2", "")
    extra = json.dumps({"role_path": str(ROLE), "ansible_python_interpreter": sys.executable, **overrides})
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    proc = subprocess.run(
        # An inventory of its own: the checkout's lab inventory sets openvif_state_dir for every host.
        [str(Path(sys.executable).parent / "ansible"), "-i", "localhost,", "-c", "local", "localhost",
         "-m", "ansible.builtin.template",
         "-a", f"src={ROLE / 'templates' / template} dest={out}",
         "-e", f"@{ROLE / 'defaults' / 'main.yml'}", "-e", f"@{ROLE / 'vars' / 'main.yml'}",
         "-e", extra],
        capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_text()


def _directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_unit_runs_boot_early_and_before_vms_and_the_network(tmp_path):
    unit = _directives(_render(tmp_path, "openvif-boot.service.j2"))
    assert unit["Type"] == ["oneshot"] and unit["RemainAfterExit"] == ["yes"]
    assert unit["ExecStart"] == ["/usr/bin/python3 -m vswitch.boot"]
    assert "PYTHONPATH=/usr/lib/openvif/boot" in unit["Environment"]
    assert "OPENVIF_STATE_DIR=/var/lib/openvif" in unit["Environment"]
    before = " ".join(unit["Before"]).split()
    wanted = {"xendomains.service", "libvirt-guests.service", "network-online.target", "network-pre.target"}
    assert wanted <= set(before)
    after = " ".join(unit["After"]).split()
    assert {"local-fs.target", "systemd-modules-load.service", "systemd-udev-trigger.service"} <= set(after)
    assert unit["DefaultDependencies"] == ["no"] and unit["WantedBy"] == ["multi-user.target"]


def test_unit_state_dir_follows_the_hosts_openvif_state_dir(tmp_path):
    unit = _render(tmp_path, "openvif-boot.service.j2", openvif_state_dir="/srv/openvif")
    assert "Environment=OPENVIF_STATE_DIR=/srv/openvif" in unit


def test_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (package systemd): cannot verify the unit")
    path = tmp_path / "openvif-boot.service"
    path.write_text(_render(tmp_path, "openvif-boot.service.j2", boot_python=sys.executable))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True,
                          check=False, timeout=60)
    # Units named in Before=/After= that this machine lacks (xendomains) are not errors of ours.
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if "openvif-boot" in line and "not found" not in line]
    assert problems == [], proc.stdout + proc.stderr


def test_networkmanager_dropin_unmanages_the_collections_interfaces(tmp_path):
    text = _render(tmp_path, "nm-unmanaged.conf.j2", boot_unmanaged_extra=["uplink9"])
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(text)
    specs = conf["keyfile"]["unmanaged-devices+"].split(";")
    assert specs == [f"interface-name:{p}" for p in ("xenbr*", "xapi*", "vif*", "tap*", "vnet*", "peth*", "*-vp",
                                                     "*-vn", "uplink9")]
