# shellcheck shell=bash
# Sourced by the scripts in scripts/molecule/: one place that says where the Molecule/podman
# state lives and how ansible finds the collections. Everything stays under $OPENVIF_MOLECULE_BASE
# (default /var/tmp/openvif-molecule); the host's own podman store and config are never touched.
MOLECULE_ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export OPENVIF_MOLECULE_BASE=${OPENVIF_MOLECULE_BASE:-/var/tmp/openvif-molecule}
BASE=$OPENVIF_MOLECULE_BASE

# The Debian release the scenarios run on, and its image (see build-image.sh): bookworm unless the
# caller names another (OPENVIF_MOLECULE_RELEASE=bullseye|trixie; tests/molecule/test_molecule.py
# says which scenarios run on which). The scenarios' molecule.yml take the image from here.
export OPENVIF_MOLECULE_RELEASE=${OPENVIF_MOLECULE_RELEASE:-bookworm}
export OPENVIF_MOLECULE_IMAGE=localhost/openvif-molecule:$OPENVIF_MOLECULE_RELEASE
# Pinned: the PyPI `ansible` wheel we take containers.podman from (Galaxy is unreachable).
OPENVIF_ANSIBLE_WHEEL_VERSION=${OPENVIF_ANSIBLE_WHEEL_VERSION:-12.3.0}

export CONTAINERS_CONF=$BASE/etc/containers.conf
export CONTAINERS_STORAGE_CONF=$BASE/etc/storage.conf
# containers.podman (extracted by setup.sh) + this checkout (bootstrap.sh's symlink).
export ANSIBLE_COLLECTIONS_PATH=$MOLECULE_ROOT_DIR/.cache/collections:$BASE/collections
export ANSIBLE_LOCAL_TEMP=$BASE/ansible-tmp
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0
# What a run on one release owns: molecule's per-scenario directory (inventory, instance config:
# under ANSIBLE_HOME/tmp), molecule's and ansible-compat's state (XDG_CACHE_HOME), run.sh's lock and
# its snapshot of the collection. Scenarios on two releases can then run at the same time
# (tests/molecule runs the other releases beside bookworm's); on one release they take turns.
RUN_DIR=$BASE/run/$OPENVIF_MOLECULE_RELEASE
export ANSIBLE_HOME=$RUN_DIR/ansible-home
export XDG_CACHE_HOME=$RUN_DIR/cache
# molecule spawns ansible-playbook and ansible-config: they must be the venv's.
export PATH=$MOLECULE_ROOT_DIR/.venv/bin:$PATH
