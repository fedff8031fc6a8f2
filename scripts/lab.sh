#!/usr/bin/env bash
# The main job: install what the lab needs, build the lab (namespaces as hypervisors, VMs and a
# physical network), run playbooks/site.yml twice (the second run must change nothing), and prove
# that VMs talk exactly as declared.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

usage() {
  cat <<EOF
usage: scripts/lab.sh [up|down|status|prove|--help]

  up       (the default) install what the lab needs, build it, run site.yml twice
           (the second run must report changed=0), then prove who reaches whom
  down     stop the lab's vswitchd daemons and delete its namespaces
  status   list the lab's namespaces and daemons; exit 0 when the lab is up, 3 when it is not
  prove    ping what must answer and what must not (the lab must be up)
  --help   this text

After 'up', '. scripts/env.sh' puts the tools (ansible, vswitchctl) on PATH in your shell.
EOF
}

# down and status need no venv (a fresh clone has none): labctl uses only the standard library for them.
py() {
  if [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"; else echo python3; fi
}

case "${1:-up}" in
  up) [ $# -le 1 ] || { usage >&2; exit 2; } ;;
  down|status) exec "$(py)" scripts/lab/labctl.py "$1" ;;
  prove)
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
      echo "lab.sh prove: no .venv yet; build the lab first with: scripts/lab.sh up" >&2; exit 1
    fi
    exec "$ROOT/.venv/bin/python" scripts/lab/labctl.py prove ;;
  -h|--help|help) usage; exit 0 ;;
  *) echo "lab.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

scripts/bootstrap.sh lab
# shellcheck source=env.sh
. "$ROOT/scripts/env.sh"
PY="$ROOT/.venv/bin/python"

echo "== building the lab"
"$PY" scripts/lab/labctl.py up
echo "== site.yml, first run"
ansible-playbook -i inventories/lab/hosts.yml playbooks/site.yml --diff
echo "== the VMs take the MACs the vif_mac role assigned (as Xen's vif = ['mac=...'])"
"$PY" scripts/lab/labctl.py macs
echo "== site.yml, second run (must report changed=0)"
log=$(mktemp)
ansible-playbook -i inventories/lab/hosts.yml playbooks/site.yml | tee "$log"
if grep -E 'changed=[1-9]' "$log" >/dev/null; then
  echo "second run changed something: site.yml is not idempotent" >&2; exit 1
fi
rm -f "$log"
echo "== proving the networks"
"$PY" scripts/lab/labctl.py prove
# The hint must work as printed in a fresh shell, from any directory: hence the absolute path.
echo "The lab stays up for you to explore, in any shell:"
echo "  . $ROOT/scripts/env.sh && ansible hv1 -m vswitch_info"
echo "  . $ROOT/scripts/env.sh && vswitchctl --host hv3 show"
echo "Check it with: $ROOT/scripts/lab.sh status; remove it with: $ROOT/scripts/lab.sh down"
