#!/usr/bin/env bash
# The vif_mac registry under concurrent controllers, repeated: 2, 4 and 8 ansible-playbook runs of the
# role started at the same moment over disjoint host groups, against the file registry and a PostgreSQL
# server the test starts, each case OPENVIF_REPEAT times (default 20). Prints one line per round:
#   file runs=8 round=3: {'runs': 8, 'failed_on_lock': 0, 'lost': 0, 'duplicates': 0}
# Root only (namespace hosts, the postgres user); the suite itself runs each case once.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export OPENVIF_REPEAT=${OPENVIF_REPEAT:-20}
PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg" \
  .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/integration/test_vif_mac_concurrent.py \
  -k concurrent_role_runs "$@" | grep -E "round=|passed|failed"
