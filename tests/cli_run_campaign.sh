#!/usr/bin/env bash
# Distributed campaigns end to end, against a real PostgreSQL this test
# starts and stops: pvf run on the bundled CNN, then the same campaign spec
# with 1 worker, 4 workers, workers killed every few seconds, the
# coordinator killed and restarted, and PostgreSQL restarted mid-run. Every
# stratum's stopping count and estimate must be identical in all of them.
#
# usage: cli_run_campaign.sh PVF SOURCE_DIR
set -eo pipefail
source "$(dirname "$0")/lib_cli.sh" cli_run_campaign.sh "$@"
pvf=$PVF
src=$ROOT
work=$T
expect() { # NAME COMMAND...
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name" "'$*' failed"; fi
}
check_eq() { # NAME WANT GOT
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "$(diff <(echo "$2") <(echo "$3") | head -5)"; fi
}
pids=()
cleanup() {
    set +e # the exit status is the tests'
    for p in "${pids[@]}"; do kill -9 "$p" && wait "$p"; done 2>/dev/null
    bash "$src/tests/pg_stop.sh" "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
    return 0
}
trap cleanup EXIT
bash "$src/tests/pg_start.sh" "$work/pg" >/dev/null
base=$(cat "$work/pg/dsn")
export PVF_CACHE=$work/cache PVF_HOME=$work/home
model=$src/models/fmnist-lenet
# A spec that finishes in seconds: margin 0.04 over the CNN's 10 tensors
# (0.08 in the sanitizer build, whose binaries are several times slower).
margin=0.04
[ -z "${PVF_TEST_SANITIZED:-}" ] || margin=0.08
spec=(--model "$model" --strata tensor --margin $margin --max-trials 3000 --seed 11)

newdb() { # name -> DSN of a fresh database
    psql "$base" -qc "CREATE DATABASE $1" >/dev/null
    echo "${base/dbname=postgres/dbname=$1}"
}
estimates() { # DSN -> the stopping point and estimate of every stratum
    psql "$1" -At -c "SELECT stratum, trials_used, estimate, lo, hi, stop_reason
                      FROM estimates ORDER BY stratum"
}
written() { # DSN: waits until the first trials are in (workers start slowly under ASan)
    for _ in $(seq 1 300); do
        # (the schema may not be there yet)
        [ "$(psql "$1" -At -c "SELECT count(*) > 0 FROM trials" 2>/dev/null)" = t ] && return 0
        sleep 0.2
    done
    return 1
}
no_duplicates() { # DSN; also: no trial taken for a crash (nothing here crashes in a trial)
    local n
    n=$(psql "$1" -At -c "SELECT count(*) - count(DISTINCT (campaign_id, stratum, trial)) FROM trials")
    expect "no duplicate trial rows" test "$n" = 0
    n=$(psql "$1" -At -c "SELECT count(*) FROM trials WHERE flags & 256 <> 0")
    expect "no crash outcomes" test "$n" = 0
}

# --- pvf run, one worker ------------------------------------------------------
db1=$(newdb one)
out=$(timeout 900 "$pvf" run "${spec[@]}" --workers 1 --db "$db1" --json 2>"$work/run1.err")
expect "pvf run finishes" test -n "$out"
ref=$(estimates "$db1")
# What pvf run printed is what the view holds.
view=$(psql "$db1" -At -F ' ' -c "SELECT stratum, trials_used, estimate, lo, hi, stopped, converged
                                   FROM pvf_stratum_estimate ORDER BY stratum")
printed=$(echo "$out" | $PY -c '
import json, sys
d = json.load(sys.stdin)
for r in d["rows"]:
    print(r["stratum"], r["trials_used"], repr(r["estimate"]), repr(r["lo"]), repr(r["hi"]),
          "t" if r["stopped"] else "f", "t" if r["converged"] else "f")')
check_eq "the printed JSON equals the view pvf_stratum_estimate" \
    "$(echo "$view" | $PY -c '
import sys
for l in sys.stdin:
    s, u, e, lo, hi, st, cv = l.split()
    print(s, u, repr(float(e)), repr(float(lo)), repr(float(hi)), st, cv)')" "$printed"
expect "every stratum stopped on the margin" \
    test "$(psql "$db1" -At -c "SELECT count(*) FROM estimates WHERE stopped AND converged
                                 AND (hi - lo) / 2 <= $margin + 1e-12")" = 10
expect "campaign done" test "$(psql "$db1" -At -c "SELECT state FROM campaigns")" = done
no_duplicates "$db1"
# The same command again: the finished campaign, nothing new.
rows=$(psql "$db1" -At -c "SELECT count(*) FROM trials")
timeout 900 "$pvf" run "${spec[@]}" --workers 1 --db "$db1" >/dev/null 2>"$work/rerun.err"
expect "same spec again finds the campaign" grep -q "already finished" "$work/rerun.err"
expect "same spec again adds no trials" \
    test "$(psql "$db1" -At -c "SELECT count(*) FROM trials")" = "$rows"
expect "one campaign" test "$(psql "$db1" -At -c "SELECT count(*) FROM campaigns")" = 1

# --- four workers -------------------------------------------------------------
db4=$(newdb four)
timeout 900 "$pvf" run "${spec[@]}" --workers 4 --db "$db4" >/dev/null 2>"$work/run4.err"
check_eq "4 workers: identical stopping counts and estimates" "$ref" "$(estimates "$db4")"
no_duplicates "$db4"

# --- interrupted pvf run, then the same command resumes -----------------------
dbi=$(newdb interrupted)
timeout 900 "$pvf" run "${spec[@]}" --workers 2 --db "$dbi" >/dev/null 2>"$work/runi.err" &
runpid=$!
# as soon as trials are stored: the whole campaign takes about 4 s on an idle machine
written "$dbi"
kill -INT "$runpid"
wait "$runpid" && status=0 || status=$?
expect "SIGINT stops pvf run with an error status" test "$status" -ne 0
expect "SIGINT says how to resume" grep -q "run the same command again" "$work/runi.err"
timeout 900 "$pvf" run "${spec[@]}" --workers 2 --db "$dbi" >/dev/null 2>"$work/runi2.err"
expect "the rerun resumes the campaign" grep -q "resumed" "$work/runi2.err"
check_eq "interrupted and resumed: identical" "$ref" "$(estimates "$dbi")"

# --- separate coordinator and workers, with things killed ---------------------
start_coordinator() { # DSN ID
    "$pvf" coordinator --db "$1" --bind "ipc://$work/co.sock" --campaign "$2" --exit-when-done \
        --heartbeat-ms 300 >>"$work/co.log" 2>&1 &
    copid=$!
}
start_worker() { # index [worker options]
    "$pvf" worker --connect "ipc://$work/co.sock" --executors 1 --name "w$1" \
        --heartbeat-ms 300 "${@:2}" >>"$work/w$1.log" 2>&1 &
    wpid[$1]=$!
    pids+=("${wpid[$1]}")
}
# After the coordinator is gone: a worker started just as it finished (the kill
# loop restarts one every 2 s) would wait for a coordinator forever. Up to 10 s
# for the others to leave on the coordinator's word, then the rest are stopped.
stop_workers() {
    for _ in $(seq 1 50); do
        kill -0 "${wpid[0]}" 2>/dev/null || kill -0 "${wpid[1]}" 2>/dev/null ||
            kill -0 "${wpid[2]}" 2>/dev/null || break
        sleep 0.2
    done
    for i in 0 1 2; do
        kill -9 "${wpid[$i]}" 2>/dev/null || true
        wait "${wpid[$i]}" 2>/dev/null || true
    done
}
campaign() { # DSN -> campaign id
    "$pvf" campaign create "${spec[@]}" --db "$1"
}
wait_done() { # DSN; the coordinator exits when the campaign is done
    local n=0
    while kill -0 "$copid" 2>/dev/null; do
        sleep 0.5
        n=$((n + 1))
        [ "$n" -lt 600 ] || { echo "campaign did not finish" >&2; return 1; }
    done
    wait "$copid"
}

# Kill -9 one of 3 workers (and start a new one in its place) each time 100
# more trials are stored, at most once a second and 5 times: kills spread over
# the run however fast it goes (the whole campaign takes a few seconds).
dbk=$(newdb killed)
id=$(campaign "$dbk")
start_coordinator "$dbk" "$id"
pids+=("$copid")
for i in 0 1 2; do start_worker $i; done
kills=0
stored=0
while kill -0 "$copid" 2>/dev/null && [ "$kills" -lt 5 ]; do
    sleep 0.2
    n=$(psql "$dbk" -At -c "SELECT count(*) FROM trials" 2>/dev/null || echo 0)
    [ "$n" -ge $((stored + 100)) ] || continue
    kill -0 "$copid" 2>/dev/null || break
    v=$((kills % 3))
    kill -9 "${wpid[$v]}" 2>/dev/null || true
    wait "${wpid[$v]}" 2>/dev/null || true
    start_worker $v
    kills=$((kills + 1))
    stored=$n
    sleep 0.8
done
wait "$copid" || true
stop_workers
expect "workers were killed during the run ($kills)" test "$kills" -ge 2
check_eq "workers killed: identical" "$ref" "$(estimates "$dbk")"
no_duplicates "$dbk"

# Kill -9 the coordinator mid-run; start it again.
dbc=$(newdb coordinator)
id=$(campaign "$dbc")
: >"$work/co.log"
start_coordinator "$dbc" "$id"
pids+=("$copid")
for i in 0 1 2; do start_worker $i; done
# once trials are stored: the campaign takes a few seconds, fixed sleeps outlast it
written "$dbc"
expect "coordinator still running when killed" kill -0 "$copid"
kill -9 "$copid"
wait "$copid" 2>/dev/null || true
sleep 1
start_coordinator "$dbc" "$id"
pids+=("$copid")
wait_done "$dbc"
stop_workers
expect "the new coordinator resumed" grep -q "already stopped" "$work/co.log"
check_eq "coordinator killed: identical" "$ref" "$(estimates "$dbc")"
no_duplicates "$dbc"

# Restart PostgreSQL mid-run. The workers run the plain full-forward trials (the same
# outcomes): with fast trials the campaign can be over before the restart.
dbp=$(newdb restarted)
id=$(campaign "$dbp")
: >"$work/co.log"
start_coordinator "$dbp" "$id"
pids+=("$copid")
for i in 0 1 2; do start_worker $i --naive; done
expect "trials written before the restart" written "$dbp"
expect "coordinator still running at the restart" kill -0 "$copid"
data=$(cat "$work/pg/datadir")
as=()
[ "$(id -u)" -ne 0 ] || as=(runuser -u postgres --)
"${as[@]}" "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_ctl" -D "$data/db" \
    -m fast -w restart -l "$data/log" >/dev/null
wait_done "$dbp"
stop_workers
expect "the coordinator saw the database go" \
    grep -q "database unavailable\|write failed\|database connection lost" "$work/co.log"
check_eq "PostgreSQL restarted: identical" "$ref" "$(estimates "$dbp")"
no_duplicates "$dbp"

summary
