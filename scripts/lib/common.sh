# Shared by the depot scripts (source it): project paths, logging, and a
# cleanup registry that runs on exit, on failure and on Ctrl-C (INT/TERM).
[[ -n ${_DEPOT_COMMON_SH:-} ]] && return 0
_DEPOT_COMMON_SH=1

DEPOT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
DEPOT_BUILD="$DEPOT_ROOT/build"
export DEPOT_ROOT DEPOT_BUILD

depot_log() { printf '==> %s\n' "$*" >&2; }
depot_warn() { printf 'warning: %s\n' "$*" >&2; }
depot_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# depot_on_exit CMD: run CMD (a shell string) when the script ends; the
# commands run in reverse order of registration, failures are ignored.
_depot_cleanups=()
depot_on_exit() { _depot_cleanups+=("$1"); }

_depot_cleanup() {
  local i
  trap - EXIT INT TERM
  for ((i = ${#_depot_cleanups[@]} - 1; i >= 0; i--)); do
    eval "${_depot_cleanups[i]}" || true
  done
  _depot_cleanups=()
}
trap _depot_cleanup EXIT
trap '_depot_cleanup; exit 130' INT
trap '_depot_cleanup; exit 143' TERM
