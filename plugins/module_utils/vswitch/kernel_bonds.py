"""Whether the kernel datapath can bond, and if not, why (for the planner's refusal).

The Linux bonding driver is the kernel's bond (``kind bond`` over rtnetlink). A kernel built
without it (``# CONFIG_BONDING is not set``, as on the machine this collection is developed on)
cannot bond at all: the planner then refuses a bond uplink on the kernel datapath naming the
missing module, before anything changes, and points to vswitchd, which bonds in userspace.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

from .settings import BOND_MODES

# The bonding driver's modes that match a declared one: active-backup is its own; balance-tcp is
# 802.3ad with layer3+4 hashing. balance-slb (source-MAC buckets, rebalanced) it does not have.
KERNEL_BOND_MODES = ("active-backup", "balance-tcp")
NO_SLB = "the Linux bonding driver has no balance-slb"
# Creating bonds through netlink is not implemented in the kernel backend yet: with the driver
# present the refusal says that, rather than pretending the module is missing.
KERNEL_BONDS_IMPLEMENTED = False


def module_state(config_has: Callable[[str], Optional[bool]]) -> tuple[bool, str]:
    """(present, why not): the driver is loaded, built in, or a module this kernel can load."""
    release = os.uname().release
    if os.path.exists("/sys/module/bonding") or os.path.exists("/sys/class/net/bonding_masters"):
        return True, ""
    built = config_has("CONFIG_BONDING")
    if built:
        return True, ""
    modules = f"/lib/modules/{release}"
    try:
        with open(f"{modules}/modules.dep", encoding="utf-8") as deps:
            if any("/bonding.ko" in line.split(":", 1)[0] for line in deps):
                return True, ""
    except OSError:
        pass
    where = "CONFIG_BONDING is not set" if built is False else f"not loaded and not found under {modules}"
    return False, f"it needs the Linux bonding driver (kernel module 'bonding'), which kernel {release} lacks ({where})"


def kernel_bond_features(config_has: Callable[[str], Optional[bool]]) -> tuple[tuple[str, ...], str]:
    """(bond modes, why not all): what Features.bond_modes/bond_missing say for the kernel datapath."""
    present, why = module_state(config_has)
    if not present:
        return (), why
    if not KERNEL_BONDS_IMPLEMENTED:
        return (), ("the kernel backend does not create bonding devices yet (the bonding driver is present); "
                    "bonds are implemented by vswitchd")
    return tuple(m for m in BOND_MODES if m in KERNEL_BOND_MODES), NO_SLB
