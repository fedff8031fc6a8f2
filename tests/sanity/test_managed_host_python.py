"""The code that runs on managed hosts must run on Python 3.8, the oldest ansible-core 2.19 supports there.

Modules and module_utils are bundled into every module run; module_utils/vswitch is also installed on
hosts as vswitchd. Debian 11 and RHEL 9 run 3.9, this machine 3.11, so nothing here executes that code
under 3.8: three static checks stand in, each catching what the others miss.
  1. the parser's own 3.8 grammar (``ast.parse(feature_version=(3, 8))``): match, except*, new syntax;
  2. vermin, target 3.8: library members and keywords (``zip(strict=)``, ``str.removeprefix``, ``dict | dict``);
  3. builtin generics evaluated at run time (``Alias = dict[str, int]``, annotations without
     ``from __future__ import annotations``), which vermin does not report outside annotations.
"""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = (3, 8)
VERMIN = str(Path(sys.executable).parent / "vermin")   # the venv's, pinned in requirements/test.txt
ON_HOSTS = sorted(p for tree in ("plugins/modules", "plugins/module_utils") for p in (ROOT / tree).rglob("*.py"))
# Subscriptable only from 3.9 (PEP 585); typing.List & co. or string annotations work on 3.8.
PEP585 = {"list", "dict", "tuple", "set", "frozenset", "type", "Callable", "Iterable", "Iterator", "Mapping",
          "MutableMapping", "Sequence", "MutableSequence", "Set", "Generator", "Awaitable", "Coroutine"}


def runtime_generics(source: str, filename: str = "<src>") -> list[str]:
    """``file:line name[...]`` for each PEP 585 subscript that Python 3.8 would evaluate and reject."""
    tree = ast.parse(source, filename)
    postponed = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                    and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
    skipped: set[int] = set()   # ids of annotation nodes: strings under postponed evaluation
    if postponed:
        for node in ast.walk(tree):
            annotations = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                annotations = [a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs,
                                                      args.vararg, args.kwarg) if a is not None] + [node.returns]
            elif isinstance(node, ast.AnnAssign):
                annotations = [node.annotation]
            for annotation in annotations:
                if annotation is not None:
                    skipped.update(id(sub) for sub in ast.walk(annotation))
    for node in ast.walk(tree):   # `if TYPE_CHECKING:` bodies never run
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                skipped.update(id(sub) for sub in ast.walk(statement))
    # `from typing import Callable`: typing's own Callable, Iterable, ... subscript on 3.8 too.
    from_typing = {alias.asname or alias.name for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and node.module == "typing" for alias in node.names}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and id(node) not in skipped:
            value = node.value
            name = value.id if isinstance(value, ast.Name) else value.attr if isinstance(value, ast.Attribute) else ""
            base = value.value.id if isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) else ""
            imported = isinstance(value, ast.Name) and name in from_typing
            if name in PEP585 and base not in ("typing", "t") and not imported:
                found.append(f"{filename}:{node.lineno} {name}[...]")
    return found


@pytest.mark.parametrize("path", ON_HOSTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_parses_with_the_python_3_8_grammar(path):
    ast.parse(path.read_text(), str(path), feature_version=TARGET)


# Modules this check found that wait for a fix elsewhere; strict, so a fix turns them into failures
# until they are removed from this set.
PENDING: set[str] = set()


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="generics evaluated at import: fix pending"))
    if str(p.relative_to(ROOT)) in PENDING else p for p in ON_HOSTS], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_builtin_generic_is_evaluated_at_run_time(path):
    found = runtime_generics(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "Python 3.8 cannot subscript these at run time (use typing.X or quote it):\n" + "\n".join(found)


def test_vermin_finds_nothing_newer_than_3_8():
    done = subprocess.run([VERMIN, "--target=3.8-", "--violations", "--no-tips",
                           "--no-parse-comments", *map(str, ON_HOSTS)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_checks_catch_what_3_8_lacks(tmp_path):
    # The checks themselves: each construct below breaks Python 3.8, and one check must say so.
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=TARGET)
    assert runtime_generics("from __future__ import annotations\nAlias = dict[str, int]\n")
    assert runtime_generics("def f(a: list[int]) -> None: ...\n")          # no postponed annotations
    assert not runtime_generics("from __future__ import annotations\ndef f(a: list[int]) -> dict[str, int]: ...\n")
    assert not runtime_generics("if TYPE_CHECKING:\n    Alias = dict[str, int]\n")   # never runs
    assert not runtime_generics("from typing import Callable\nF = Callable[[int], int]\n")   # typing's own
    assert runtime_generics("from collections.abc import Callable\nF = Callable[[int], int]\n")
    newer = tmp_path / "newer.py"
    newer.write_text("pairs = list(zip([1], [2], strict=True))\n")
    done = subprocess.run([VERMIN, "--target=3.8-", "--violations", "--no-tips", str(newer)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "zip(strict)" in done.stdout, done.stdout


IMPORT_ALL = """
import importlib, json, pkgutil, vswitch
failed = {}
for info in pkgutil.walk_packages(vswitch.__path__, "vswitch."):
    try:
        importlib.import_module(info.name)
    except Exception as err:  # noqa: BLE001 - reported by name
        failed[info.name] = repr(err)
print(json.dumps(failed))
"""


def interpreter(version: str) -> str | None:
    """python<version> on PATH, or one pyenv installed (this machine's image has 3.8 to 3.13 there)."""
    candidates = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python"))
    if candidates:
        return str(candidates[-1])
    found = shutil.which(f"python{version}")
    return found if found and "/shims/" not in found else None   # a pyenv shim without its version fails


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10", "3.12", "3.13"])
def test_every_module_util_imports_on_real_interpreters(version):
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (PATH or ~/.pyenv): only the static checks above ran")
    done = subprocess.run([python, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'plugins/module_utils')!r})"
                           f"\n{IMPORT_ALL}"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    failed = json.loads(done.stdout)
    pending = {"vswitch." + p.removeprefix("plugins/module_utils/vswitch/").removesuffix(".py").replace("/", ".")
               for p in PENDING} | ({"vswitch.daemon.__main__"} if PENDING else set())
    unexpected = {name: err for name, err in failed.items() if name not in pending}
    assert not unexpected, f"Python {version} ({python}) cannot import: {unexpected}"
    if version == "3.8":   # strict, like the xfail above: once fixed, PENDING must shrink
        assert set(failed) == pending, f"fixed on 3.8, remove from PENDING: {pending - set(failed)}"
