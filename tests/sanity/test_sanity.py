"""Offline sanity: what `ansible-test sanity` and the linters check, run on this machine."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (ROOT / "plugins/modules").glob("*.py") if p.stem != "__init__")
PLUGINS = sorted((kind, p.stem) for kind in ("connection", "filter", "lookup", "action", "callback")
                 for p in (ROOT / "plugins" / kind).glob("*.py") if p.stem != "__init__")


def run(argv, env=None, cwd=ROOT, timeout=600):
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_every_module(module, ansible_env):
    rc, out = run([str(BIN / "ansible-doc"), "-t", "module", f"openvif.vswitch.{module}"], env=ansible_env)
    assert rc == 0 and "EXAMPLES" in out and "RETURN VALUES" in out, out


def test_ansible_doc_renders_every_other_plugin(ansible_env):
    for kind, name in PLUGINS:
        if kind == "filter":
            continue  # filter files hold several filters; ansible-doc lists them by filter name
        if kind == "action":
            # ansible-doc has no 'action' type: an action is documented by the module file of its name.
            assert name in MODULES, f"action plugin {name} has no plugins/modules/{name}.py documenting it"
            continue
        rc, out = run([str(BIN / "ansible-doc"), "-t", kind, f"openvif.vswitch.{name}"], env=ansible_env)
        assert rc == 0, out


def test_validate_modules(tmp_path):
    """ansible-test's validate-modules on a copy of the collection at a real ansible_collections path."""
    tree = tmp_path / "ansible_collections" / "openvif" / "vswitch"
    tree.parent.mkdir(parents=True)
    rc, out = run(["rsync", "-a", "--exclude", ".venv", "--exclude", ".cache", "--exclude", ".git",
                   f"{ROOT}/", f"{tree}/"])
    assert rc == 0, out
    # ansible-test bootstraps pip in its venv with a script it downloads from a host this machine can't
    # reach; seed its cache with our stand-in (same contract: ensurepip, then pip install).
    cache = Path.home() / ".ansible/test/cache"
    cache.mkdir(parents=True, exist_ok=True)
    for version in ("24_2", "24_3", "25_0", "25_1"):
        shutil.copy(ROOT / "tests/sanity/get_pip_offline.py", cache / f"get_pip_{version}.py")
    rc, out = run(["git", "init", "-q", "."], cwd=tree)
    rc, out = run(["git", "add", "-A"], cwd=tree)
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    rc, out = run([str(BIN / "ansible-test"), "sanity", "--test", "validate-modules", "--python", "3.11"],
                  env=env, cwd=tree, timeout=900)
    assert rc == 0, out[-6000:]


def test_ruff():
    rc, out = run([str(BIN / "ruff"), "check", "plugins", "tests", "scripts", "bench"])
    assert rc == 0, out


def test_yamllint():
    paths = [p for p in ("playbooks", "inventories", "roles", "extensions", "meta", "changelogs", "galaxy.yml")
             if (ROOT / p).exists()]
    rc, out = run([str(BIN / "yamllint"), "-s", *paths])
    assert rc == 0, out


def test_ansible_lint(ansible_env):
    env = dict(ansible_env, ANSIBLE_LINT_NODEPS="1")
    targets = [p for p in ("playbooks", "roles") if (ROOT / p).exists()]
    rc, out = run([str(BIN / "ansible-lint"), "--offline", "-q", *targets], env=env)
    assert rc == 0, out[-6000:]


def test_collection_builds_offline(tmp_path, ansible_env):
    rc, out = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(ROOT)],
                  env=ansible_env)
    assert rc == 0, out
    built = list(tmp_path.glob("openvif-vswitch-*.tar.gz"))
    assert len(built) == 1
    import tarfile
    names = tarfile.open(built[0]).getnames()
    assert "plugins/modules/vswitch_port.py" in names and not any(n.startswith(".venv") for n in names)
