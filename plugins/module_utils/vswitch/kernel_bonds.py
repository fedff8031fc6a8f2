"""Whether the kernel datapath can bond, and if not, why (for the planner's refusal).

The Linux bonding driver is the kernel's bond (``kind bond`` over rtnetlink). A kernel built
without it (``# CONFIG_BONDING is not set``, as on the machine this collection is developed on)
cannot bond at all: the planner then refuses a bond uplink on the kernel datapath naming the
missing module, before anything changes, and points to vswitchd, which bonds in userspace.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Callable, Optional

from .errors import MissingFeatureError
from .settings import BOND, BOND_MODES

# The bonding driver's modes that match a declared one: active-backup is its own; balance-tcp is
# 802.3ad with layer3+4 hashing. balance-slb (source-MAC buckets, rebalanced) it does not have.
KERNEL_BOND_MODES = ("active-backup", "balance-tcp")
NO_SLB = "the Linux bonding driver has no balance-slb"
# The driver's numbers (include/uapi/linux/if_bonding.h).
BOND_MODE_ACTIVEBACKUP = 1
BOND_MODE_8023AD = 4
BOND_XMIT_POLICY_LAYER34 = 1
AD_LACP_RATES = {"slow": 0, "fast": 1}
# lacp_active (Linux 5.15, include/uapi/linux/if_link.h): 1 sends LACPDUs periodically, 0 only answers
# an active partner ("speak when spoken to"), as lacp: passive declares. pyroute2's table stops before
# it, so rtnl.py encodes and decodes it.
IFLA_BOND_AD_LACP_ACTIVE = 29
LACP_ACTIVE_SINCE = (5, 15)
USERSPACE = "use datapath: userspace (vswitchd has it)"


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
    return tuple(m for m in BOND_MODES if m in KERNEL_BOND_MODES), NO_SLB


def lacp_passive_missing(release: Optional[str] = None) -> str:
    """Why this kernel's bonds cannot be passive ("" when they can): lacp_active came in Linux 5.15;
    an older driver ignores the attribute, so the bond would stay active while the run said passive."""
    release = release or os.uname().release
    numbers = [int(part) for part in release.split("-", 1)[0].split(".")[:2] if part.isdigit()]
    if len(numbers) == 2 and tuple(numbers) >= LACP_ACTIVE_SINCE:
        return ""
    since = ".".join(map(str, LACP_ACTIVE_SINCE))
    return f"kernel {release}'s bonding driver has no lacp_active (it came in Linux {since})"


def lacp_active_attr(record: Mapping[str, Any]) -> dict[int, bytes]:
    """IFLA_BOND_AD_LACP_ACTIVE for an 802.3ad record, to send with rtnl.changelink (none otherwise)."""
    if record["mode"] != "balance-tcp":
        return {}
    return {IFLA_BOND_AD_LACP_ACTIVE: bytes([0 if record["lacp"] == "passive" else 1])}


def check_kernel_bond(record: Mapping[str, Any], prefix: str = "uplink.", passive_missing: str = "") -> None:
    """Refuse, before anything changes, what the bonding driver cannot hold as declared.

    Every accepted record reads back from the kernel as the same record (idempotence): a setting
    the driver has no place for must be its default, and delays must be whole miimon intervals
    (the driver rounds them down). ``passive_missing``: why this kernel cannot be passive (Features).
    """
    mode, lacp = record["mode"], record["lacp"]
    if mode == "active-backup" and lacp != "off":
        raise MissingFeatureError(prefix + "lacp", lacp, "with mode active-backup is not a kernel bond: the bonding "
                                                         "driver's LACP is mode 802.3ad (declare mode: balance-tcp); "
                                                         + USERSPACE)
    if lacp == "passive" and passive_missing:
        raise MissingFeatureError(prefix + "lacp", lacp, f"cannot be held by a kernel bond here: {passive_missing}; "
                                                         "use lacp: active, or " + USERSPACE)
    unheld = {"rebalance_interval": "the bonding driver does not rebalance (there is no balance-slb)",
              "lacp_fallback": "the bonding driver always carries traffic over one link when the partner "
                               "speaks no LACP"}
    if mode == "active-backup":
        unheld["lacp_rate"] = "active-backup has no LACP"
    else:
        unheld["primary"] = "802.3ad has no primary member"
    for key, why in unheld.items():
        if record.get(key) != BOND[key].default:
            raise MissingFeatureError(prefix + key, record.get(key), f"cannot be held by a kernel bond in mode "
                                                                     f"{mode}: {why}; leave it at its default "
                                                                     f"({BOND[key].default!r}) or {USERSPACE}")
    miimon = record["miimon"]
    for key in ("updelay", "downdelay"):
        if record[key] and (not miimon or record[key] % miimon):
            raise MissingFeatureError(prefix + key, record[key], f"is not a whole number of miimon intervals "
                                                                 f"({miimon} ms): the bonding driver counts "
                                                                 "delays in miimon intervals (a nonzero miimon "
                                                                 "that divides it), or " + USERSPACE)


def bond_attrs(record: Mapping[str, Any], ifindex: Callable[[str], int]) -> dict[str, Any]:
    """The IFLA_BOND_* attributes (as pyroute2 keywords of ``kind bond``) that make ``record``.

    Only what the mode takes: the driver refuses primary in 802.3ad and lacp_rate outside it.
    Primary is sent as 0 when none is declared, which clears one set before.
    """
    attrs: dict[str, Any] = {}
    if record["mode"] == "active-backup":
        attrs["bond_mode"] = BOND_MODE_ACTIVEBACKUP
    else:   # balance-tcp: 802.3ad aggregation, L3+L4 hashing over the aggregated members
        attrs["bond_mode"] = BOND_MODE_8023AD
        attrs["bond_xmit_hash_policy"] = BOND_XMIT_POLICY_LAYER34
        attrs["bond_ad_lacp_rate"] = AD_LACP_RATES[record["lacp_rate"]]
    attrs["bond_miimon"] = record["miimon"]
    attrs["bond_updelay"] = record["updelay"]
    attrs["bond_downdelay"] = record["downdelay"]
    if record["mode"] == "active-backup":
        attrs["bond_primary"] = ifindex(record["primary"]) if record["primary"] else 0
    return attrs


def driver_options(record: Mapping[str, Any]) -> dict[str, str]:
    """The same bond as the bonding driver's own option names and values (its sysfs files), which is
    how ifcfg's BONDING_OPTS, ifupdown's bond-* and NetworkManager's [bond] say it at boot.

    The options ``bond_attrs`` sends, in the same order, each named as the driver names it
    (``bond_xmit_hash_policy`` is ``xmit_hash_policy``); primary only when declared, lacp_active
    (what ``lacp_active_attr`` sends) only when off.
    """
    options: dict[str, str] = {}
    if record["mode"] == "active-backup":
        options["mode"] = "active-backup"
    else:
        options["mode"] = "802.3ad"
        options["xmit_hash_policy"] = "layer3+4"
        options["lacp_rate"] = str(record["lacp_rate"])
        if record["lacp"] == "passive":   # on is the driver's default: said only when it is not
            options["lacp_active"] = "off"
    for key in ("miimon", "updelay", "downdelay"):
        options[key] = str(record[key])
    if record["mode"] == "active-backup" and record["primary"]:
        options["primary"] = str(record["primary"])
    return options


def record_of(data: Mapping[str, Any], members: list[str], names: Mapping[int, str]) -> Optional[dict[str, Any]]:
    """The bond record a bonding device's IFLA_BOND_* attributes (``data``, by name) say, or None.

    None: a mode this collection does not make (balance-rr, xor, ...), so not its bond.
    Settings the driver does not hold read as their defaults (check_kernel_bond keeps them so).
    """
    record = {name: setting.default for name, setting in BOND.items()}
    mode = data.get("IFLA_BOND_MODE")
    if mode == BOND_MODE_ACTIVEBACKUP:
        record["mode"] = "active-backup"
        primary = data.get("IFLA_BOND_PRIMARY")
        record["primary"] = names.get(primary) if primary else None
    elif mode == BOND_MODE_8023AD and data.get("IFLA_BOND_XMIT_HASH_POLICY") == BOND_XMIT_POLICY_LAYER34:
        # No IFLA_BOND_AD_LACP_ACTIVE (a kernel before 5.15): the driver is always active.
        passive = data.get("IFLA_BOND_AD_LACP_ACTIVE", 1) == 0
        record["mode"], record["lacp"] = "balance-tcp", "passive" if passive else "active"
        rates = {number: rate for rate, number in AD_LACP_RATES.items()}
        record["lacp_rate"] = rates.get(data.get("IFLA_BOND_AD_LACP_RATE", 0), "slow")
    else:
        return None
    for key in ("miimon", "updelay", "downdelay"):
        record[key] = int(data.get("IFLA_BOND_" + key.upper(), 0))
    record["members"] = list(members)
    return record


def bond_status(name: str, data: Mapping[str, Any], members: list[tuple[str, bool, Mapping[str, Any]]],
                names: Mapping[int, str]) -> dict[str, Any]:
    """How bonding device ``name`` runs, in the rows vswitch_info reports for vswitchd's bonds.

    ``data``: its IFLA_BOND_* attributes; ``members``: (name, carrier, IFLA_BOND_SLAVE_* attributes)
    each. A member carries traffic when the driver has it active (slave state 0) with MII up; in
    802.3ad, when it is also in the active aggregator.
    """
    lacp = data.get("IFLA_BOND_MODE") == BOND_MODE_8023AD
    info = dict(data.get("IFLA_BOND_AD_INFO") or {})
    aggregator = info.get("IFLA_BOND_AD_INFO_AGGREGATOR")
    partner = info.get("IFLA_BOND_AD_INFO_PARTNER_MAC")
    rows = []
    for member, carrier, slave in members:
        in_aggregator = slave.get("IFLA_BOND_SLAVE_AD_AGGREGATOR_ID") == aggregator if lacp else None
        rows.append({"name": member, "link": "up" if carrier else "down",
                     "enabled": slave.get("IFLA_BOND_SLAVE_MII_STATUS") == 0,
                     "active": slave.get("IFLA_BOND_SLAVE_STATE") == 0 and in_aggregator is not False,
                     "aggregator_id": slave.get("IFLA_BOND_SLAVE_AD_AGGREGATOR_ID") if lacp else None,
                     "link_failures": slave.get("IFLA_BOND_SLAVE_LINK_FAILURE_COUNT")})
    negotiated = bool(partner) and partner != "00:00:00:00:00:00"
    active = data.get("IFLA_BOND_ACTIVE_SLAVE")
    return {"bond": name, "datapath": "kernel", "mode": "balance-tcp" if lacp else "active-backup",
            "lacp_status": ("negotiated" if negotiated else "no partner") if lacp else "off",
            "active_member": names.get(active) if active else None,
            "aggregator": {"id": aggregator, "ports": info.get("IFLA_BOND_AD_INFO_NUM_PORTS"),
                           "partner_mac": partner} if lacp else None,
            "failovers": None, "members": rows}
