"""How the operator commands (vswitchctl, ovs-vsctl) end: output, or ``PROG: message`` and an exit status."""
from __future__ import annotations

import sys
from collections.abc import Callable

from .errors import VswitchError


class CliError(Exception):
    """An error the command reports as ``PROG: message`` with exit status ``code`` (no message: silent)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def run_reporting(prog: str, action: Callable[[], str], *, daemon_prefix: str = "",
                  os_error: Callable[[OSError], str] = str) -> int:
    """Run ``action`` (it returns the text to print); every error becomes one stderr line and a status."""
    try:
        out = action()
    except CliError as err:
        if str(err):
            sys.stderr.write(f"{prog}: {err}\n")
        return err.code
    except VswitchError as err:
        sys.stderr.write(f"{prog}: {daemon_prefix}{err.message}\n")
        return 1
    except OSError as err:
        sys.stderr.write(f"{prog}: {os_error(err)}\n")
        return 1
    sys.stdout.write(out)
    return 0
