# lib_cli.sh - sourced by the tests/cli_*.sh scripts: arguments, a temp dir
# removed on exit, and the pass/fail counters.
#   source lib_cli.sh SCRIPT_NAME PVF REPO_ROOT
set -u
PVF=${2:?usage: $1 PVF REPO_ROOT}
ROOT=${3:?usage: $1 PVF REPO_ROOT}
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/pvf_${1%.sh}.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

passed=0
failed=0
ok() { echo "ok  $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
