#!/usr/bin/env bash
# The test command: install what the suite needs (apt, pip), then run every test (unit, sanity,
# integration in network namespaces, Molecule in podman) with pytest. Ends with pytest's summary.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/bootstrap.sh test
if [ -x scripts/molecule/setup.sh ]; then
  scripts/molecule/setup.sh
fi
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
exec "$ROOT/.venv/bin/python" -m pytest "${@:-tests}"
