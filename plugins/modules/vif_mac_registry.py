#!/usr/bin/python
# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the vif_mac_registry action, which runs on the controller (plugins/action)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: vif_mac_registry
short_description: Plan fleet-unique VIF MACs against a registry that concurrent runs can share
version_added: "0.2.0"
description:
  - Runs on the controller. With O(operation=plan) (what the P(openvif.vswitch.vif_mac#role) role does), reads
    the registry, plans every declared VIF's MAC with the same planner as the
    P(openvif.vswitch.vif_mac_plan#filter) filter, and records the new assignments, as one step that no other
    run can interleave with.
  - O(backend=file) locks C(<path>.lock) (C(flock)) for the read-plan-write; a run that waits longer than
    O(lock_timeout) fails naming the holder (pid, host, since when). Just before replacing the file it is read
    again, and if something that ignores the lock changed it the plan is made again (compare-and-swap). The file
    is replaced atomically, so a run killed at any moment leaves the old registry or the new one.
  - O(backend=postgresql) keeps one row per assignment in O(table) with a unique constraint on the MAC; a run writes
    only its differences in one transaction, each guarded by the value it read, and plans again when another run
    got there first.
  - O(operation=export) writes the backend's assignments as a registry file to O(dest); O(operation=import) merges a
    registry file O(src) into the backend (refusing a VIF with another MAC there, or a MAC held by another VIF), so a
    fleet moves between the backends without a VM changing its address.
author:
  - openvif developers (@openvif)
requirements:
  - psycopg 3 on the controller for O(backend=postgresql).
options:
  operation:
    description: What to do.
    type: str
    choices: [plan, export, import]
    default: plan
  backend:
    description: Where the registry lives.
    type: str
    choices: [file, postgresql]
    default: file
  path:
    description: The registry file (O(backend=file)).
    type: path
  dsn:
    description:
      - libpq connection string or URI (O(backend=postgresql)), such as C(host=/run/postgresql dbname=fleet).
      - Empty takes everything from the standard C(PGHOST), C(PGPORT), C(PGDATABASE), C(PGUSER), C(PGPASSWORD)
        environment of the controller.
    type: str
    default: ""
  table:
    description: The table of assignments (created when missing).
    type: str
    default: vif_mac_assignments
  lock_timeout:
    description: Seconds to wait for another run's lock on the registry file before failing.
    type: float
    default: 60
  prefix:
    description: The MAC range, as for the P(openvif.vswitch.vif_mac#module) module.
    type: str
    default: "00:16:3e"
  declared:
    description: Host name to that host's VIF declarations (the role's C(vif_mac_vifs)); O(operation=plan) only.
    type: dict
    default: {}
  seen:
    description: Host name to the MACs its interfaces hold (the module's C(gather)); O(operation=plan) only.
    type: dict
    default: {}
  prune:
    description: Drop entries of VIFs no host declares any more.
    type: bool
    default: false
  adopt:
    description: A new VIF keeps its interface's present MAC when it is in range and nobody else holds it.
    type: bool
    default: true
  src:
    description: Registry file to import (O(operation=import)).
    type: path
  dest:
    description: Registry file to write (O(operation=export)); replaced atomically.
    type: path
attributes:
  check_mode:
    support: full
    description: Plans (or compares) and reports; writes nothing.
  diff_mode:
    support: partial
    description: For O(backend=file), the registry text before and after.
notes:
  - The plan is the planner's result (see the role's C(vif_mac_plan)) without the registry text; RV(replans) says
    how often the registry changed under the run.
"""

EXAMPLES = r"""
- name: Plan and record (what the vif_mac role does, once per play)
  openvif.vswitch.vif_mac_registry:
    backend: postgresql
    dsn: "host=db1.example.net dbname=fleet user=ansible"
    declared: {hv1: [{vm: web01, interface: vif3.0}]}
    seen: {hv1: []}
  run_once: true

- name: Move a file registry into PostgreSQL, keeping every MAC
  openvif.vswitch.vif_mac_registry:
    operation: import
    backend: postgresql
    src: "{{ playbook_dir }}/vif_mac_registry.yml"

- name: Export the database's assignments for review
  openvif.vswitch.vif_mac_registry:
    operation: export
    backend: postgresql
    dest: /tmp/vif_mac_registry.yml
"""

RETURN = r"""
assignments:
  description: Host name to its VIFs with C(key), C(mac), C(interface), C(bridge), C(source) and C(xen_vif) (plan).
  returned: operation=plan
  type: dict
registry:
  description: Every assignment after the run, VIF key to MAC.
  returned: always
  type: dict
replans:
  description: How many times the registry changed under this run and the plan was made again.
  returned: operation=plan
  type: int
imported:
  description: Entries the import added.
  returned: operation=import
  type: int
lock_waited:
  description: Seconds this run waited for another run's lock (O(backend=file)).
  returned: backend=file
  type: float
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.mac_registry import ARGUMENT_SPEC  # noqa: E402


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    # Reached only when the action plugin is bypassed: the registry lives on the controller.
    module.fail_json(msg="vif_mac_registry runs on the controller through its action plugin; "
                         "call it as openvif.vswitch.vif_mac_registry, not as a module file")


if __name__ == "__main__":
    main()
