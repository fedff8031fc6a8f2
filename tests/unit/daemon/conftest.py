"""vswitchd is installed on hosts as the plain package ``vswitch``; test it the same way."""
from __future__ import annotations

import sys
from pathlib import Path

MODULE_UTILS = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"
if str(MODULE_UTILS) not in sys.path:
    sys.path.insert(0, str(MODULE_UTILS))
