from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MODULE_UTILS = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"


def test_set_name_is_what_pgrep_and_ps_read():
    # In a child, so this test process keeps its own name.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from vswitch import proctitle; "
            "ok = proctitle.set_name('vswitchd'); print(ok, open('/proc/self/comm').read().strip())")
    done = subprocess.run([sys.executable, "-c", code, str(MODULE_UTILS)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.stdout.split() == ["True", "vswitchd"], done.stderr


def test_long_names_are_cut_as_the_kernel_would():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from vswitch import proctitle; "
            "proctitle.set_name('vswitchd-with-a-long-name'); print(open('/proc/self/comm').read().strip())")
    done = subprocess.run([sys.executable, "-c", code, str(MODULE_UTILS)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.stdout.strip() == "vswitchd-with-a", done.stderr
