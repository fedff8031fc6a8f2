#!/usr/bin/env bash
# The test command: install what the suite needs (apt, pip), then run every test (unit, sanity,
# integration in network namespaces, Molecule in podman) with pytest. Ends with pytest's summary and
# its 15 slowest tests.
#   scripts/test.sh                 the whole suite (what CI runs)
#   scripts/test.sh --quick         the developer loop, about 2 minutes: unit, sanity and the
#                                   integration tests marked `quick`
#   scripts/test.sh --clean         remove what the suite leaves behind (Molecule's podman store and
#                                   image cache with its mounts, the labs' run directories) and exit
#   scripts/test.sh ARGS...         pytest ARGS, e.g. `scripts/test.sh tests/unit`
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

clean() {
  # Molecule's private podman store ($OPENVIF_MOLECULE_BASE, with its image cache: about 400 MB that
  # save the image build on the next run): the mounts its overlay driver left, deepest first, then the
  # files. It refuses while a container runs there (another test run). /run/openvif-lab: the run
  # directories (daemon state, socket, log) of labs whose namespaces are gone; a lab that is up keeps its.
  # shellcheck source=molecule/env.sh
  . "$ROOT/scripts/molecule/env.sh"
  local base=$OPENVIF_MOLECULE_BASE run=/run/openvif-lab dir
  if [ -d "$base" ]; then
    if [ -f "$CONTAINERS_STORAGE_CONF" ] && command -v podman >/dev/null \
        && [ -n "$(podman ps -q 2>/dev/null)" ]; then
      echo "test.sh --clean: containers are running in $base (a test run?); nothing removed" >&2; exit 1
    fi
    # `|| true`: with no mount left, grep's status would end the script here (set -e, pipefail).
    findmnt -rn -o TARGET | { grep -F "$base/" || true; } | sort -r | while read -r target; do
      umount "$target" || umount -l "$target"
    done
    rm -rf --one-file-system "$base"
    echo "removed $base"
  fi
  for dir in "$run"/*/; do
    [ -d "$dir" ] || continue
    dir=${dir%/}
    if [ ! -e "/run/netns/$(basename "$dir")" ]; then rm -rf --one-file-system "$dir"; echo "removed $dir"; fi
  done
  rmdir "$run" 2>/dev/null || true
}

args=()
case "${1:-}" in
  --clean) clean; exit 0 ;;
  --quick)
    shift
    # Unit and sanity tests whole, of the integration tests only those marked quick (pyproject.toml).
    args=(tests/unit tests/sanity tests/integration -m "not integration or quick" "$@") ;;
  *) args=("${@:-tests}") ;;
esac

scripts/bootstrap.sh test
# Molecule's podman setup and image build run inside the suite (tests/molecule), so a failure there is
# a failed test with its log, and pytest still prints its summary.
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
exec "$ROOT/.venv/bin/python" -m pytest --durations=15 "${args[@]}"
