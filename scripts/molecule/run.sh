#!/usr/bin/env bash
# Run molecule on this collection's scenarios (extensions/molecule/<scenario>) with podman set up
# by setup.sh. Sets the environment, prepares what is missing, runs one molecule at a time.
#   scripts/molecule/run.sh test -s kernel
#   scripts/molecule/run.sh converge -s vswitchd && scripts/molecule/run.sh login -s vswitchd
#   OPENVIF_MOLECULE_RELEASE=bullseye scripts/molecule/run.sh test -s kernel   on another Debian release
#   SKIP_SETUP=1 ...   do not run setup.sh first (it is a quick no-op once done)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"

if [ "${SKIP_SETUP:-0}" != 1 ]; then
  "$HERE/setup.sh"
fi
# The release's image (setup.sh builds bookworm's; another release's is made the first time it is
# asked for, then cached): a no-op in well under a second when it is there.
"$HERE/build-image.sh"
case " $* " in   # the libvirt scenario's image (libvirtd, QEMU) is big: built only when it runs
  *" -s libvirt "*|*" --scenario-name libvirt "*) OPENVIF_MOLECULE_VARIANT=libvirt "$HERE/build-image.sh" ;;
esac
cd "$MOLECULE_ROOT_DIR"
# Scenarios of one release share their state directory; one molecule per release at a time
# (container names carry the release, so two releases do not collide).
mkdir -p "$RUN_DIR" "$ANSIBLE_HOME" "$XDG_CACHE_HOME"
exec 9>"$RUN_DIR/run.lock"
if ! flock -n 9; then
  echo "molecule-run: another scenario is running on $OPENVIF_MOLECULE_RELEASE; waiting for $RUN_DIR/run.lock" >&2
  flock -w 1800 9 || { echo "molecule-run: gave up waiting for $RUN_DIR/run.lock" >&2; exit 1; }
fi
# The collection under test is a snapshot of the checkout taken now, as molecule's own prerun
# would install it: others may edit the tree while a scenario runs (converge and idempotence
# must see the same code), and the roles run from a copied collection as users have it.
SNAP=$RUN_DIR/snapshot
"$MOLECULE_ROOT_DIR/.venv/bin/python" - "$MOLECULE_ROOT_DIR" "$SNAP" <<'PY'
import shutil, sys
from pathlib import Path
root, snap = Path(sys.argv[1]), Path(sys.argv[2])
dest = snap / "ansible_collections" / "openvif" / "vswitch"
tmp = dest.with_name("vswitch.new")
shutil.rmtree(tmp, ignore_errors=True)
names_skipped = shutil.ignore_patterns(".git", ".venv", ".cache", ".ansible", ".hypothesis", ".ruff_cache",
                                       ".pytest_cache", "__pycache__", "*.pyc", "*.tar.gz")
paths_skipped = {root / "tests" / "output", root / "bench" / "results"}   # galaxy.yml's build_ignore

def skip(directory, names):
    return set(names_skipped(directory, names)) | {n for n in names if Path(directory) / n in paths_skipped}

shutil.copytree(root, tmp, ignore=skip, symlinks=True)
shutil.rmtree(dest, ignore_errors=True)
tmp.rename(dest)
PY
export ANSIBLE_COLLECTIONS_PATH=$SNAP:$BASE/collections

# fd 9 (the lock) stays with this shell only: podman's conmon would otherwise inherit it and hold
# the lock as long as a container lives (e.g. after `converge`).
rc=0
molecule "$@" 9>&- || rc=$?
exit "$rc"
