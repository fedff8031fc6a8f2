#!/usr/bin/env bash
# The main job: install what the lab needs, build the lab (namespaces as hypervisors, VMs and a
# physical network), run playbooks/site.yml twice (the second run must change nothing), and prove
# that VMs talk exactly as declared.  `scripts/lab.sh down` removes the lab.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
if [ "${1:-}" = down ]; then exec "$PY" scripts/lab/labctl.py down; fi

scripts/bootstrap.sh lab
export ANSIBLE_CONFIG="$ROOT/ansible.cfg" PATH="$ROOT/.venv/bin:$PATH"

echo "== building the lab"
"$PY" scripts/lab/labctl.py up
echo "== site.yml, first run"
ansible-playbook -i inventories/lab/hosts.yml playbooks/site.yml --diff
echo "== site.yml, second run (must report changed=0)"
log=$(mktemp)
ansible-playbook -i inventories/lab/hosts.yml playbooks/site.yml | tee "$log"
if grep -E 'changed=[1-9]' "$log" >/dev/null; then
  echo "second run changed something: site.yml is not idempotent" >&2; exit 1
fi
rm -f "$log"
echo "== proving the networks"
"$PY" scripts/lab/labctl.py prove
echo "The lab stays up for you to explore (ip netns list; ansible hv1 -m vswitch_info)."
echo "Remove it with: scripts/lab.sh down"
