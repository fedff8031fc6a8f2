#!/usr/bin/env bash
# The test command: install what the suite needs (apt, pip), then run every test (unit, sanity,
# integration in network namespaces, Molecule in podman) with pytest. Ends with pytest's summary.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/bootstrap.sh test
# Molecule's podman setup and image build run inside the suite (tests/molecule), so a failure there is
# a failed test with its log, and pytest still prints its summary.
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
exec "$ROOT/.venv/bin/python" -m pytest "${@:-tests}"
