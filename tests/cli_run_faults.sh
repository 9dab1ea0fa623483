#!/usr/bin/env bash
# Workers that crash, hang or are told to stop, with a real PostgreSQL this
# test starts and stops:
#   - a trial that aborts its worker is recorded as a crash outcome, with
#     its fault site, by the worker that caught the signal (which then
#     leaves and is restarted); the campaign completes;
#   - a trial that hangs is caught by the progress deadline, its worker
#     leaves (a thread cannot be stopped) and the campaign completes, with no
#     other trial taken for a crash (restarted workers load the model slowly);
#   - SIGTERM drains a worker: it finishes its job, says BYE, exits 0; a
#     second SIGTERM makes it leave at once, saying BYE too;
#   - a coordinator stopped for longer than its workers' silence limit does
#     not drop them when it wakes up (their heartbeats were queued).
# The test hooks PVF_TEST_CRASH_TRIAL / PVF_TEST_HANG_TRIAL=STRATUM:TRIAL
# make a worker abort or hang at that trial.
#
# usage: cli_run_faults.sh PVF SOURCE_DIR
set -eo pipefail
source "$(dirname "$0")/lib_cli.sh" cli_run_faults.sh "$@"
expect() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name" "'$*' failed"; fi
}
trap 'set +e
      # background jobs are timeout wrappers: their pvf child first, or it outlives the test
      for p in $(jobs -p); do pkill -9 -P "$p"; kill -9 "$p" && wait "$p"; done 2>/dev/null
      bash "$ROOT/tests/pg_stop.sh" "$T/pg" >/dev/null 2>&1; rm -rf "$T"' EXIT
bash "$ROOT/tests/pg_start.sh" "$T/pg" >/dev/null
base=$(cat "$T/pg/dsn")
export PVF_CACHE=$T/cache PVF_HOME=$T/home
logged() { # PATTERN FILE: waits up to 10 s for an extended regex in a log
    for _ in $(seq 1 50); do
        grep -qE "$1" "$2" && return 0
        sleep 0.2
    done
    return 1
}
newdb() {
    psql "$base" -qc "CREATE DATABASE $1" >/dev/null
    echo "${base/dbname=postgres/dbname=$1}"
}
# Small strata that run to their cap: every trial index below it is needed
# (a smaller cap in the sanitizer build, whose binaries are several times slower).
cap=120
[ -z "${PVF_TEST_SANITIZED:-}" ] || cap=60
spec=(--model "$ROOT/models/fmnist-lenet" --strata tensor --margin 0.000001 --max-trials $cap
      --seed 5 --heartbeat-ms 200)

# --- a trial that kills its worker ------------------------------------------------
db=$(newdb crash)
PVF_TEST_CRASH_TRIAL=9:37 timeout 300 "$PVF" run "${spec[@]}" --workers 2 --db "$db" \
    >/dev/null 2>"$T/crash.err" && rc=0 || rc=$?
expect "campaign with a crashing trial completes" test "$rc" = 0
expect "the crashing trial is recorded as a crash outcome (flag 256, value 1)" \
    test "$(psql "$db" -At -c "SELECT flags, value FROM trials WHERE stratum = 9 AND trial = 37")" = "256|1"
expect "... with its fault site" \
    test "$(psql "$db" -At -c "SELECT mask <> 0 FROM trials WHERE stratum = 9 AND trial = 37")" = t
expect "the worker caught the signal and said so" \
    grep -q "trial 37 of stratum 9 crashed an executor (SIGABRT)" "$T"/home/logs/worker-*.log
expect "every other trial of the stratum ran" \
    test "$(psql "$db" -At -c "SELECT count(*) FROM trials WHERE stratum = 9 AND flags & 256 = 0")" = $((cap - 1))
expect "all strata ran to the cap" \
    test "$(psql "$db" -At -c "SELECT count(*) FROM estimates WHERE trials_used = $cap AND stop_reason = 'cap'")" = 10

# --- a trial that hangs -------------------------------------------------------------
db=$(newdb hang)
PVF_TEST_HANG_TRIAL=4:11 timeout 300 "$PVF" run "${spec[@]}" --workers 2 --trial-deadline-ms 1500 \
    --db "$db" >/dev/null 2>"$T/hang.err" && rc=0 || rc=$?
expect "campaign with a hanging trial completes" test "$rc" = 0
expect "the hanging trial is recorded as a crash outcome" \
    test "$(psql "$db" -At -c "SELECT flags FROM trials WHERE stratum = 4 AND trial = 11")" = 256
expect "... and no other trial is (a slow model load is no hang)" \
    test "$(psql "$db" -At -c "SELECT count(*) FROM trials WHERE flags & 256 <> 0")" = 1
expect "a stuck worker left to be restarted" grep -q "stuck in a trial" "$T"/home/logs/worker-*.log

# --- SIGTERM drains a worker --------------------------------------------------------
db=$(newdb drain)
# --naive: slow enough trials that the worker is still busy when SIGTERM comes;
# heartbeats of 1 s, so that a loaded machine does not make the draining worker look silent
id=$("$PVF" campaign create "${spec[@]:0:10}" --naive --db "$db")
timeout 900 "$PVF" coordinator --db "$db" --bind "ipc://$T/co.sock" --campaign "$id" --exit-when-done \
    --heartbeat-ms 1000 >"$T/co.log" 2>&1 &
co=$!
timeout 900 "$PVF" worker --connect "ipc://$T/co.sock" --executors 1 --name drained --heartbeat-ms 1000 \
    >"$T/w1.log" 2>&1 &
w1=$!
sleep 2
# timeout(1) passes the SIGTERM on to the worker and to its process group: the worker gets it
# twice, which is one request to drain (a repeat within a second), not a second one to abort
kill -TERM "$w1"
wait "$w1" && rc=0 || rc=$?
expect "SIGTERM: the worker exits 0" test "$rc" = 0
expect "SIGTERM: the worker drained" grep -q "draining" "$T/w1.log"
expect "SIGTERM: ... and did not take the repeat for a second signal" \
    test "$(grep -c "leaving without finishing" "$T/w1.log")" = 0
expect "SIGTERM: the coordinator saw it go" logged "worker drained left: drained" "$T/co.log"
expect "SIGTERM: ... and never took it for silent" \
    test "$(grep -c "worker drained is silent" "$T/co.log")" = 0
# a second signal, a second later: the worker leaves without finishing, and says so. The
# coordinator is stopped meanwhile, so the draining worker waits for acknowledgements.
"$PVF" worker --connect "ipc://$T/co.sock" --executors 1 --name quitter --heartbeat-ms 1000 \
    >"$T/wq.log" 2>&1 &
wq=$!
logged "worker quitter joined" "$T/co.log" && sleep 1
pkill -STOP -P "$co"
kill -TERM "$wq"
sleep 1.5
kill -TERM "$wq"
wait "$wq" && rc=0 || rc=$?
pkill -CONT -P "$co"
expect "second SIGTERM: the worker exits 0" test "$rc" = 0
expect "second SIGTERM: the worker left at once" grep -q "leaving without finishing" "$T/wq.log"
expect "second SIGTERM: the coordinator saw it go" logged "worker quitter left: aborted" "$T/co.log"
timeout 900 "$PVF" worker --connect "ipc://$T/co.sock" --executors 1 --name second --heartbeat-ms 1000 \
    >"$T/w2.log" 2>&1 &
w2=$!
wait "$co" && rc=0 || rc=$?
wait "$w2" || true
expect "SIGTERM: another worker finished the campaign" test "$rc" = 0
expect "SIGTERM: no trial lost" \
    test "$(psql "$db" -At -c "SELECT count(*) FROM trials")" = $((10 * cap))

# --- a stalled coordinator -----------------------------------------------------------
db=$(newdb stalled)
# --naive and a small cap: still running when the coordinator is stopped; silence limit
# 5 x 200 ms, the stop 3 s
id=$("$PVF" campaign create "${spec[@]:0:6}" --max-trials 20 --seed 5 --naive --db "$db")
timeout 900 "$PVF" coordinator --db "$db" --bind "ipc://$T/co3.sock" --campaign "$id" --exit-when-done \
    --heartbeat-ms 200 >"$T/co3.log" 2>&1 &
co=$!
timeout 900 "$PVF" worker --connect "ipc://$T/co3.sock" --executors 1 --name steady --heartbeat-ms 200 \
    >"$T/w3.log" 2>&1 &
w3=$!
expect "stalled coordinator: the worker joined" logged "worker steady joined" "$T/co3.log"
pkill -STOP -P "$co"
sleep 3
pkill -CONT -P "$co"
wait "$co" && rc=0 || rc=$?
wait "$w3" || true
expect "stalled coordinator: the campaign completes" test "$rc" = 0
expect "stalled coordinator: the worker was not declared silent" \
    test "$(grep -c "is silent" "$T/co3.log")" = 0
expect "stalled coordinator: no trial lost" \
    test "$(psql "$db" -At -c "SELECT count(*) FROM trials")" = 200

# --- a model changed after the campaign was created ----------------------------------
db=$(newdb changed)
cp -r "$ROOT/models/fmnist-lenet" "$T/model"
id=$("$PVF" campaign create --model "$T/model" --strata tensor --db "$db")
printf '\0' | dd of="$T/model/model.safetensors" bs=1 seek=5000 conv=notrunc status=none
timeout 60 "$PVF" coordinator --db "$db" --bind "ipc://$T/co2.sock" --campaign "$id" \
    --exit-when-done >"$T/co2.out" 2>"$T/co2.err" && rc=0 || rc=$?
expect "changed model: the coordinator refuses the campaign (exit 1)" test "$rc" = 1
expect "changed model: the error names the file" \
    grep -q "model.safetensors: changed since the campaign was created" "$T/co2.err"

summary
