"""Sanity: `ansible-test sanity` in full (the gate every published collection is held to), plus the
project's own linters, ansible-doc on every plugin and an offline collection build."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._util.target.common.constants import CONTROLLER_PYTHON_VERSIONS, REMOTE_ONLY_PYTHON_VERSIONS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (ROOT / "plugins/modules").glob("*.py") if p.stem != "__init__")
PLUGINS = sorted((kind, p.stem) for kind in ("connection", "filter", "lookup", "action", "callback")
                 for p in (ROOT / "plugins" / kind).glob("*.py") if p.stem != "__init__")
CONTROLLER_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# Every Python ansible-core runs modules on (ansible-test's own list, so it follows ansible-core upgrades).
TARGET_PYTHONS = REMOTE_ONLY_PYTHON_VERSIONS + CONTROLLER_PYTHON_VERSIONS


def run(argv, env=None, cwd=ROOT, timeout=600):
    # No stdin (CI has none) and the return code read by the caller, hence check=False.
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
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


@pytest.fixture(scope="module")
def collection_copy(tmp_path_factory) -> Path:
    """The checkout as git sees it (tracked and new files, nothing ignored) under a real
    ansible_collections/openvif/vswitch path, in a git tree of its own: ansible-test needs both."""
    if shutil.which("git") is None or shutil.which("rsync") is None:
        pytest.fail("ansible-test sanity needs git and rsync; scripts/bootstrap.sh test installs rsync")
    rc, listing = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    assert rc == 0, f"git ls-files in {ROOT} failed (the sanity copy is made from a git checkout): {listing}"
    tree = tmp_path_factory.mktemp("sanity") / "ansible_collections" / "openvif" / "vswitch"
    tree.mkdir(parents=True)
    files = tree.parent / "files.txt"
    files.write_text(listing)
    rc, out = run(["rsync", "-a", "--from0", f"--files-from={files}", "--ignore-missing-args", f"{ROOT}/", f"{tree}/"])
    files.unlink()
    assert rc == 0, out
    for argv in (["git", "init", "-q", "."], ["git", "add", "-A"]):
        rc, out = run(argv, cwd=tree)
        assert rc == 0, out
    seed_pip_bootstrap()
    return tree


def seed_pip_bootstrap() -> None:
    """ansible-test bootstraps pip in each venv with a get-pip.py it downloads from a host this machine
    cannot reach; put our stand-in (same contract) where it looks first, for the pip it asks for."""
    pip = get_venv_packages(types.SimpleNamespace(version=CONTROLLER_PYTHON))["pip"]
    cache = Path.home() / ".ansible/test/cache"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "tests/sanity/get_pip_offline.py", cache / f"get_pip_{pip.replace('.', '_')}.py")


def ansible_test(tree: Path, *args: str, path_first: Path | None = None) -> tuple[int, str]:
    path = f"{BIN}:{os.environ['PATH']}" if path_first is None else f"{path_first}:{BIN}:{os.environ['PATH']}"
    env = dict(os.environ, PATH=path)
    return run([str(BIN / "ansible-test"), "sanity", "--color", "no", *args], env=env, cwd=tree, timeout=1800)


def failures(out: str) -> str:
    """What failed first, then the end of the log: a 24-test run prints far more than an assert shows."""
    errors = "\n".join(line for line in out.splitlines() if line.startswith(("ERROR", "FATAL")))
    return f"{errors}\n--- end of ansible-test's output ---\n{out[-4000:]}"


def test_ansible_test_sanity_in_full(collection_copy):
    """Every sanity test ansible-test has, on the controller's Python, each in its own venv with the
    requirements it pins (about 90 s once those venvs are cached, a few minutes on a fresh machine)."""
    rc, out = ansible_test(collection_copy, "--python", CONTROLLER_PYTHON, "--venv", "--requirements")
    assert rc == 0, failures(out)
    # ansible-test passes a test it skips (no changelog config, no targets): the ones that matter ran.
    ran = {line.split('"')[1] for line in out.splitlines() if line.startswith("Running sanity test ")}
    missing = {"changelog", "compile", "import", "pep8", "pylint", "shebang", "validate-modules", "yamllint"} - ran
    assert not missing, f"ansible-test did not run {sorted(missing)}:\n{out[-4000:]}"
    # A test whose tool is absent (shellcheck) is skipped with only a warning: that is not a pass.
    absent = [line for line in out.splitlines() if "Required program" in line]
    assert not absent, "\n".join(absent) + " (scripts/bootstrap.sh test installs it)"


def find_python(version: str) -> Path | None:
    """A working python{version}: on PATH, else one that pyenv keeps (this kind of machine has several
    there while only one is on PATH; pyenv's shims for the others exist but refuse to run)."""
    name = f"python{version}"
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(name), *sorted(pyenv.glob(f"{version}.*/bin/{name}"), reverse=True)]
    for candidate in filter(None, candidates):
        rc, out = run([str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], timeout=60)
        if rc == 0 and out.strip() == version:
            return Path(candidate)
    return None


@pytest.mark.parametrize("python", [v for v in TARGET_PYTHONS if v != CONTROLLER_PYTHON])
def test_compile_on_every_target_python(python, collection_copy):
    """Modules and module_utils must compile on every Python ansible-core runs modules on. The full run
    covers the controller's Python; the others here wherever this machine has the interpreter."""
    interpreter = find_python(python)
    if interpreter is None:
        pytest.skip(f"no working python{python} on PATH or under pyenv's versions, so ansible-test cannot "
                    "compile for it here")
    # ansible-test finds a target Python by name on PATH: put this one first.
    rc, out = ansible_test(collection_copy, "--test", "compile", "--python", python, path_first=interpreter.parent)
    assert rc == 0, failures(out)
    assert f'Running sanity test "compile" on Python {python}' in out, out[-4000:]


def test_ruff():
    rc, out = run([str(BIN / "ruff"), "check", "plugins", "tests", "scripts", "bench"])
    assert rc == 0, out


def test_yamllint():
    paths = [p for p in ("playbooks", "inventories", "roles", "extensions", "meta", "changelogs", "galaxy.yml")
             if (ROOT / p).exists()]
    rc, out = run([str(BIN / "yamllint"), "-s", *paths])
    assert rc == 0, out


def test_ansible_lint(ansible_env):
    # The whole collection (galaxy.yml, changelog, meta, roles, playbooks) with the production profile
    # that .ansible-lint sets: what ansible-lint on the installed collection reports.
    env = dict(ansible_env, ANSIBLE_LINT_NODEPS="1", NO_COLOR="1")
    rc, out = run([str(BIN / "ansible-lint"), "--offline", "--profile", "production"], env=env)
    assert rc == 0 and "Profile 'production' was required, and it passed" in out, out[-6000:]


def test_changelog_is_released_for_galaxy_version():
    import yaml

    rc, out = run([str(BIN / "antsibull-changelog"), "lint"])
    assert rc == 0, out
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    releases = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())["releases"]
    assert version in releases, f"galaxy.yml's {version} has no release in changelogs/changelog.yaml"


def test_collection_builds_offline(tmp_path, ansible_env):
    rc, out = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(ROOT)],
                  env=ansible_env)
    assert rc == 0, out
    built = list(tmp_path.glob("openvif-vswitch-*.tar.gz"))
    assert len(built) == 1
    import tarfile
    names = tarfile.open(built[0]).getnames()
    assert "plugins/modules/vswitch_port.py" in names and not any(n.startswith(".venv") for n in names)
