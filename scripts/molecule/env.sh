# shellcheck shell=bash
# Sourced by the scripts in scripts/molecule/: one place that says where the Molecule/podman
# state lives and how ansible finds the collections. Everything stays under $OPENVIF_MOLECULE_BASE
# (default /var/tmp/openvif-molecule); the host's own podman store and config are never touched.
MOLECULE_ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export OPENVIF_MOLECULE_BASE=${OPENVIF_MOLECULE_BASE:-/var/tmp/openvif-molecule}
BASE=$OPENVIF_MOLECULE_BASE

# The image the scenarios run (see build-image.sh); bump the tag when the package list changes.
export OPENVIF_MOLECULE_IMAGE=localhost/openvif-molecule:bookworm
# Pinned: the PyPI `ansible` wheel we take containers.podman from (Galaxy is unreachable).
OPENVIF_ANSIBLE_WHEEL_VERSION=${OPENVIF_ANSIBLE_WHEEL_VERSION:-12.3.0}

export CONTAINERS_CONF=$BASE/etc/containers.conf
export CONTAINERS_STORAGE_CONF=$BASE/etc/storage.conf
export ANSIBLE_HOME=$BASE/ansible-home
# containers.podman (extracted by setup.sh) + this checkout (bootstrap.sh's symlink).
export ANSIBLE_COLLECTIONS_PATH=$MOLECULE_ROOT_DIR/.cache/collections:$BASE/collections
export ANSIBLE_LOCAL_TEMP=$BASE/ansible-tmp
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0
# molecule and ansible-compat keep their per-scenario state under XDG_CACHE_HOME.
export XDG_CACHE_HOME=$BASE/cache
# molecule spawns ansible-playbook and ansible-config: they must be the venv's.
export PATH=$MOLECULE_ROOT_DIR/.venv/bin:$PATH
