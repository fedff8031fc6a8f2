# shellcheck shell=bash  # sourced, never run: bash and zsh are the shells it serves, plain sh in part
# Source me (". scripts/env.sh", from any directory): puts the lab's and the tests' tools on PATH
# (ansible, ansible-playbook, pytest from .venv/bin; vswitchctl from scripts/bin) and points Ansible
# at this checkout's ansible.cfg, so `ansible hv1 -m vswitch_info` works in this shell, anywhere.
# scripts/bootstrap.sh (run by scripts/lab.sh and scripts/test.sh) makes the .venv.
if [ -n "${BASH_SOURCE:-}" ]; then
  OPENVIF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
elif [ -n "${ZSH_VERSION:-}" ]; then
  # shellcheck disable=SC2296  # zsh's own expansion for the file being sourced
  OPENVIF_ROOT=$(cd "$(dirname "${(%):-%x}")/.." && pwd)
elif [ -f scripts/env.sh ]; then   # plain sh cannot tell where a sourced file lives: the current directory
  OPENVIF_ROOT=$(pwd)
else
  echo "env.sh: source it from bash or zsh, or from the repository root" >&2
  # shellcheck disable=SC2317  # exit is reached when this file is run rather than sourced
  return 1 2>/dev/null || exit 1
fi
if [ ! -x "$OPENVIF_ROOT/.venv/bin/ansible" ]; then
  echo "env.sh: $OPENVIF_ROOT/.venv has no ansible yet; run $OPENVIF_ROOT/scripts/lab.sh first" >&2
fi
case ":$PATH:" in
  *":$OPENVIF_ROOT/.venv/bin:"*) ;;
  *) PATH="$OPENVIF_ROOT/.venv/bin:$OPENVIF_ROOT/scripts/bin:$PATH" ;;
esac
ANSIBLE_CONFIG="$OPENVIF_ROOT/ansible.cfg"
export PATH ANSIBLE_CONFIG OPENVIF_ROOT
