"""Run modules and playbooks through Ansible itself (as users do) and return parsed results."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional

import yaml

RECAP = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.MULTILINE)


def write_inventory(directory: Path, hosts: dict[str, str], python: str, *, group: Optional[str] = None,
                    host_vars: Optional[dict[str, dict[str, Any]]] = None) -> Path:
    """An inventory whose hosts are network namespaces (host name -> namespace).

    ``group`` puts them in a group of that name (for plays with ``hosts: <group>``); ``host_vars``
    adds each host's own variables.
    """
    members = {"hosts": {
        name: {"ansible_connection": "openvif.vswitch.netns", "ansible_netns_name": ns,
               "ansible_python_interpreter": python, **(host_vars or {}).get(name, {})}
        for name, ns in hosts.items()}}
    inventory = {"all": {"children": {group: members}} if group else members}
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run_module(env: dict[str, str], inventory: Path, host: str, module: str, args: dict[str, Any],
               *, check: bool = False, diff: bool = True, timeout: float = 120) -> dict[str, Any]:
    """Run one module ad hoc; the result_files test callback writes the host's full result as JSON."""
    tree = Path(tempfile.mkdtemp(prefix="openvif-result-"))
    env = dict(env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_CALLBACKS_ENABLED="result_files",
               ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).parent / "callback_plugins"),
               RESULT_FILES_DIR=str(tree))
    argv = ["ansible", "-i", str(inventory), host, "-m", module]
    if args:  # an empty '-a {}' would reach the module as a free-form string
        argv += ["-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    try:
        return json.loads((tree / f"{host}.json").read_text())
    except (OSError, ValueError):
        raise AssertionError(f"ansible gave no result (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def run_playbook(env: dict[str, str], inventory: Path, playbook: Path, *extra: str, timeout: float = 600,
                 cwd: Optional[Path] = None) -> tuple[int, str, dict[str, Any]]:
    """Run a playbook; return (rc, output, per-host PLAY RECAP counters)."""
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), str(playbook), *extra], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)
    stats: dict[str, Any] = {}
    for host, counters in RECAP.findall(proc.stdout):
        stats[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counters)}
    return proc.returncode, proc.stdout + proc.stderr, stats


def temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="openvif-test-"))
