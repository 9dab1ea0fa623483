# lib_cli.sh - sourced by the tests/cli_*.sh scripts: arguments, a temp dir
# removed on exit, the pass/fail counters and expect_fail.
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

# expect_fail NAME NEEDLE CAUSE_REGEX PVF_ARGS...
#   NEEDLE: fixed string the error line must contain (the file or flag;
#   empty: none);
#   CAUSE_REGEX: extended regex (case-insensitive) for a word of the cause,
#   matched with the temp dir's case names (m_hole, ...) cut out of the line.
expect_fail() {
    local name=$1 needle=$2 cause=$3
    shift 3
    local out=${STDOUT_TO:-$T/stdout} err="$T/stderr" rc
    : >"$T/stdout"
    # (in a subshell whose stderr is dropped: bash's own "Segmentation fault"
    # notice would otherwise land in the test log)
    (timeout 30 "$PVF" "$@" >"$out" 2>"$err" </dev/null; exit $?) 2>/dev/null
    rc=$?
    local line
    line=$(head -n 1 "$err")
    local why=""
    if [ "$rc" -eq 124 ]; then
        why="timed out after 30 s (hang?)"
    elif [ "$rc" -ge 128 ]; then
        why="killed by signal $((rc - 128)) (exit $rc)"
    elif [ "$rc" -eq 0 ]; then
        why="exit 0, expected 1 or 2"
    elif [ "$rc" -ne 1 ] && [ "$rc" -ne 2 ]; then
        why="exit $rc, expected 1 or 2"
    elif grep -qE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error' "$err"; then
        why="sanitizer report on stderr: $(grep -m1 -E 'Sanitizer|runtime error' "$err")"
    elif [ -s "$out" ]; then
        why="wrote to stdout: $(head -c 120 "$out" | head -n 1)"
    elif [ ! -s "$err" ]; then
        why="nothing on stderr"
    elif [ "$(wc -l <"$err")" -ne 1 ] || [ "$(tail -c 1 "$err" | od -An -c | tr -d ' ')" != '\n' ]; then
        why="stderr is not exactly one line ($(wc -l <"$err") newlines): $(head -c 300 "$err" | tr '\n' '|')"
    elif [ "${line#pvf }" = "$line" ]; then
        why="stderr line does not start with 'pvf ': $line"
    elif ! grep -qF -- "$needle" "$err"; then
        why="stderr line does not name '$needle': $line"
    elif ! sed -E "s#$T/[^/: ]*#TMP#g" "$err" | grep -qiE -- "$cause"; then
        why="stderr line gives no cause /$cause/: $line"
    fi
    if [ -n "$why" ]; then
        fail "$name" "$why"
    else
        ok "$name"
    fi
    [ -n "${PVF_TEST_VERBOSE:-}" ] && echo "    rc $rc: $(head -c 400 "$err" | tr '\n' '|')"
    return 0
}

# run NAME OUT PVF_ARGS... - runs pvf with stdout to OUT; on anything but a
# clean exit 0 (empty stderr) prints FAIL NAME and returns 1.
run() {
    local name=$1 out=$2 rc
    shift 2
    # (subshell with stderr dropped: keeps bash's crash notices out of the log)
    (timeout 120 "$PVF" "$@" >"$out" 2>"$out.err" </dev/null; exit $?) 2>/dev/null
    rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "$name" "pvf $* exited $rc: $(head -c 300 "$out.err" | tr '\n' '|')"
        return 1
    fi
    if [ -s "$out.err" ]; then
        fail "$name" "pvf $* wrote to stderr: $(head -c 300 "$out.err" | tr '\n' '|')"
        return 1
    fi
    return 0
}

# check NAME ARGS... - runs the python program on stdin with ARGS as
# sys.argv[1:]; ok when it exits 0, else FAIL with its last line of output.
check() {
    local name=$1 msg
    shift
    if msg=$(PYTHONPATH="$ROOT/tools" "$PY" - "$@" 2>&1); then
        ok "$name"
    else
        fail "$name" "$(printf '%s\n' "$msg" | tail -n 1)"
    fi
}
