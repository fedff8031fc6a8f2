"""Property tests (hypothesis) for fleet-wide MAC assignment.

Kept to a modest runtime: the 100,000-VIF properties run a handful of examples (about 1 s each).
"""
from __future__ import annotations

import random

from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac as M
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ConflictError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FLEET = 100_000

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)


@st.composite
def prefixes(draw) -> str:
    """Xen's OUI (or a sub-range of it) or any locally administered unicast prefix of 1-5 octets."""
    if draw(st.booleans()):
        return draw(st.sampled_from(["00:16:3e", "00:16:3e:00", "00:16:3e:ff"]))
    first = draw(st.integers(0, 255)) & 0xFC | 0x02   # unicast, locally administered
    rest = draw(st.lists(st.integers(0, 255), min_size=0, max_size=4))
    return ":".join(f"{o:02x}" for o in [first] + rest)


def _fleet(vm_prefix: str, count: int, hosts: int = 1000) -> dict[str, list[dict]]:
    declared: dict[str, list[dict]] = {f"h{h}": [] for h in range(hosts)}
    for i in range(count):
        declared[f"h{i % hosts}"].append({"vm": f"{vm_prefix}{i // 4}", "device": i % 4,
                                          "interface": f"vif{i // 4}.{i % 4}"})
    return declared


def _check_unique_unicast_in_range(macs, rng: M.MacRange) -> None:
    assert len(set(macs)) == len(macs)
    for mac in macs:
        value = M.mac_to_int(mac)
        assert rng.contains(value)
        assert not int(mac[:2], 16) & 1, f"{mac} is multicast"


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(vm_prefix=names, extra=st.integers(0, 500), seen_seed=st.integers(0, 2**32 - 1),
       seen_count=st.integers(0, 5000))
def test_100k_vifs_fleet_unique_in_xen_range(vm_prefix, extra, seen_seed, seen_count):
    """100,000 VIFs (+ a few) over 1,000 hosts, with thousands of MACs already seen in use."""
    count = FLEET + extra
    rnd = random.Random(seen_seed)
    seen_macs = {M.int_to_mac(M.XEN_RANGE.base | rnd.getrandbits(24)) for _mac in range(seen_count)}
    seen = {"h0": [{"interface": f"eth{i}", "mac": m} for i, m in enumerate(sorted(seen_macs))]}
    plan = M.plan_fleet(None, _fleet(vm_prefix, count), seen)
    macs = list(plan["registry"].values())
    assert len(macs) == count
    _check_unique_unicast_in_range(macs, M.XEN_RANGE)
    assert not seen_macs & set(macs), "an assignment collides with a MAC seen in use"
    assert sum(len(v) for v in plan["assignments"].values()) == count


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vm_prefix=names, removed=st.integers(0, 20_000), added=st.integers(0, 20_000), seed=st.integers(0, 2**16))
def test_100k_existing_assignments_survive_adds_and_removes(vm_prefix, removed, added, seed):
    existing = {f"{vm_prefix}{i}/0": M.int_to_mac(a)
                for i, a in enumerate(random.Random(seed).sample(range(M.XEN_RANGE.base, M.XEN_RANGE.base + (1 << 24)),
                                                                 FLEET))}
    registry = {"version": 1, "prefix": "00:16:3e", "assignments": existing}
    keep = [f"{vm_prefix}{i}" for i in range(removed, FLEET)]
    new = [f"new-{vm_prefix}{i}" for i in range(added)]
    declared = {"h": [{"vm": name} for name in keep + new]}
    plan = M.plan_fleet(registry, declared, {})
    after = plan["registry"]
    assert all(after[k] == m for k, m in existing.items())          # nothing existing moves (not even undeclared)
    _check_unique_unicast_in_range(list(after.values()), M.XEN_RANGE)
    assert len(plan["added"]) == added and plan["kept"] == FLEET


@settings(max_examples=40, deadline=None)
@given(prefix=prefixes(), keys=st.lists(names, min_size=1, max_size=300, unique=True), data=st.data())
def test_every_output_unicast_in_range_and_locally_administered_when_asked(prefix, keys, data):
    rng = M.parse_prefix("prefix", prefix)
    keys = keys[:rng.size]
    seen_suffixes = data.draw(st.lists(st.integers(0, rng.size - 1), max_size=min(50, rng.size - len(keys))))
    seen = {"h": [{"interface": f"e{i}", "mac": rng.address(s)} for i, s in enumerate(seen_suffixes)]}
    plan = M.plan_fleet(None, {"h": [{"vm": k} for k in keys]}, seen, prefix)
    macs = list(plan["registry"].values())
    _check_unique_unicast_in_range(macs, rng)
    for mac in macs:
        assert mac.startswith(rng.prefix + ":")
        assert M.is_locally_administered(mac) == (not prefix.startswith("00:16:3e"))
    held = {rng.address(s) for s in seen_suffixes}
    assert not held & set(macs)


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(names, min_size=2, max_size=200, unique=True), data=st.data())
def test_stability_when_vifs_are_added_and_removed(keys, data):
    """Run after run, with VIFs coming and going, nobody who stays ever changes MAC."""
    registry = None
    history: dict[str, str] = {}
    live = set(data.draw(st.sets(st.sampled_from(keys))))
    for _round in range(data.draw(st.integers(1, 4))):
        plan = M.plan_fleet(registry, {"h": [{"vm": k} for k in sorted(live)]}, {},
                            prune=data.draw(st.booleans()))
        after = plan["registry"]
        for key in live:
            if key + "/0" in history and (registry or {}).get("assignments", {}).get(key + "/0"):
                assert after[key + "/0"] == history[key + "/0"]
        assert len(set(after.values())) == len(after)
        history.update(after)
        registry = {"version": 1, "prefix": plan["prefix"], "assignments": after}
        live = (live - set(data.draw(st.sets(st.sampled_from(keys))))) | set(data.draw(st.sets(st.sampled_from(keys))))


@settings(max_examples=30, deadline=None)
@given(keys=st.lists(names, min_size=1, max_size=100, unique=True), data=st.data())
def test_plan_does_not_depend_on_declaration_order_or_host_split(keys, data):
    shuffled = data.draw(st.permutations(keys))
    hosts = data.draw(st.integers(1, 5))
    a = M.plan_fleet(None, {"h": [{"vm": k} for k in keys]}, {})
    b = M.plan_fleet(None, {f"h{i % hosts}": [] for i in range(hosts)} |
                     {f"h{h}": [{"vm": k} for j, k in enumerate(shuffled) if j % hosts == h] for h in range(hosts)}, {})
    assert a["registry"] == b["registry"]


@settings(max_examples=25, deadline=None)
@given(seen=st.sets(st.integers(0, 255), max_size=255), data=st.data())
def test_small_range_fills_exactly_then_refuses(seen, data):
    rng = M.parse_prefix("p", "02:00:00:00:00")
    free = 256 - len(seen)
    taken = {rng.base | s for s in seen}
    keys = [f"k{i}" for i in range(free)]
    got = M.assign(rng, {}, keys, taken)
    assert len(set(got.values()) | taken) == 256
    try:
        M.assign(rng, got, ["one-too-many"], taken)
    except ConflictError as err:
        assert "no free address left" in err.reason
    else:
        raise AssertionError("assigning past a full range must fail")


@settings(max_examples=50, deadline=None)
@given(key=names, in_use=st.sets(st.integers(0, 255), max_size=200))
def test_choice_is_the_first_free_address_of_the_probe_order(key, in_use):
    rng = M.parse_prefix("p", "02:00:00:00:00")
    used = [rng.address(s) for s in in_use]
    chosen = M.choose(key, rng, used)
    assert chosen not in used
    order = list(M.candidates(key, rng))
    assert chosen == next(m for m in order if m not in set(used))


@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
                     min_size=1, max_size=30, unique=True), data=st.data())
def test_registry_text_round_trips_any_key(keys, data):
    """The hand-written YAML quoting survives quotes, backslashes, control and non-ASCII characters."""
    import yaml

    suffixes = data.draw(st.lists(st.integers(0, (1 << 24) - 1), min_size=len(keys), max_size=len(keys),
                                  unique=True))
    assignments = {k: M.XEN_RANGE.address(s) for k, s in zip(keys, suffixes, strict=True)}
    loaded = yaml.safe_load(M.render_registry(assignments, M.XEN_RANGE))
    assert loaded["assignments"] == assignments
    assert M.parse_registry(loaded, M.XEN_RANGE) == assignments
