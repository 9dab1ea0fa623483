#!/usr/bin/env bash
# Campaigns changed while a coordinator serves them, with a real PostgreSQL
# this test starts and stops: pvf campaign extend resumes strata stopped by
# their cap, pvf campaign cancel stops a running campaign for good, and a
# second coordinator is refused a campaign the first one holds.
#
# usage: cli_run_control.sh PVF SOURCE_DIR
set -eo pipefail
source "$(dirname "$0")/lib_cli.sh" cli_run_control.sh "$@"
expect() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name" "'$*' failed"; fi
}
pids=()
trap 'set +e
      # pids are timeout wrappers: their pvf child first, or it outlives the test
      for p in "${pids[@]}"; do pkill -9 -P "$p"; kill -9 "$p" && wait "$p"; done 2>/dev/null
      bash "$ROOT/tests/pg_stop.sh" "$T/pg" >/dev/null 2>&1; rm -rf "$T"' EXIT
bash "$ROOT/tests/pg_start.sh" "$T/pg" >/dev/null
db=$(cat "$T/pg/dsn")
export PVF_CACHE=$T/cache PVF_HOME=$T/home
q() { psql "$db" -At -c "$1"; }
wait_for() { # SQL EXPECTED: polls up to 120 s
    for _ in $(seq 1 600); do
        [ "$(q "$1")" = "$2" ] && return 0
        sleep 0.2
    done
    return 1
}

small=$("$PVF" campaign create --model "$ROOT/models/fmnist-lenet" --strata tensor \
    --margin 0.000001 --max-trials 40 --seed 3 --db "$db")
big=$("$PVF" campaign create --model "$ROOT/models/fmnist-lenet" --strata tensor \
    --margin 0.000001 --max-trials 100000 --seed 4 --db "$db")
timeout 600 "$PVF" coordinator --db "$db" --bind "ipc://$T/co.sock" --heartbeat-ms 200 \
    >"$T/co.log" 2>&1 &
co=$!
pids+=("$co")
timeout 600 "$PVF" worker --connect "ipc://$T/co.sock" --executors 2 --heartbeat-ms 200 \
    >"$T/w.log" 2>&1 &
pids+=($!)

expect "small campaign runs to its cap" \
    wait_for "SELECT state FROM campaigns WHERE id = $small" done
expect "cap: not converged" \
    test "$(q "SELECT count(*) FROM estimates WHERE campaign_id = $small AND trials_used = 40
              AND stop_reason = 'cap' AND NOT converged")" = 10

"$PVF" campaign extend "$small" --max-trials 80 --db "$db" >/dev/null
expect "extend: the campaign runs again to the new cap" \
    wait_for "SELECT state || ' ' || (SELECT min(trials_used) FROM estimates
              WHERE campaign_id = $small) FROM campaigns WHERE id = $small" "done 80"

# The same campaign with --naive (every trial a full forward pass): another
# campaign, the same trials, the same outcome for every one of them. Its cap
# is lower (naive trials are slow, in the sanitizer build most of all): the
# first 20 trials of each stratum are the same trials as the fast campaign's.
naive=$("$PVF" campaign create --model "$ROOT/models/fmnist-lenet" --strata tensor \
    --margin 0.000001 --max-trials 20 --seed 3 --naive --db "$db")
expect "naive: a campaign of its own" test "$naive" != "$small"
expect "naive: runs to its cap" wait_for "SELECT state FROM campaigns WHERE id = $naive" done
expect "naive: the same 200 trials, the same outcomes, nothing settled without inference" \
    test "$(q "SELECT count(*) || ' ' || count(*) FILTER (WHERE a.value = b.value
                 AND a.incorrect = b.incorrect AND a.flags & ~8 = b.flags
                 AND a.tensor = b.tensor AND a.element = b.element AND a.mask = b.mask)
               FROM trials a JOIN trials b USING (stratum, trial)
               WHERE a.campaign_id = $small AND b.campaign_id = $naive")" = "200 200"

expect "the big campaign is running" \
    wait_for "SELECT sum(trials_done) > 100 FROM estimates WHERE campaign_id = $big" t
"$PVF" campaign cancel "$big" --db "$db" >/dev/null
wait_log() { # PATTERN: polls the coordinator's log up to 120 s
    for _ in $(seq 1 600); do
        grep -q "$1" "$T/co.log" && return 0
        sleep 0.2
    done
    return 1
}
expect "cancel: the coordinator stops serving it" wait_log "campaign $big cancelled"
expect "cancel: the state stays cancelled" \
    test "$(q "SELECT state FROM campaigns WHERE id = $big")" = cancelled
expect "cancel: every stratum says cancelled" \
    wait_for "SELECT count(*) FROM estimates WHERE campaign_id = $big AND stop_reason = 'cancelled'" 10
n=$(q "SELECT count(*) FROM trials WHERE campaign_id = $big")
sleep 2
expect "cancel: no trials after it" test "$(q "SELECT count(*) FROM trials WHERE campaign_id = $big")" -le $((n + 600))

# A second coordinator cannot take a campaign the first one holds.
third=$("$PVF" campaign create --model "$ROOT/models/fmnist-lenet" --strata tensor \
    --margin 0.000001 --max-trials 100000 --seed 5 --db "$db")
expect "the first coordinator serves the new campaign" \
    wait_for "SELECT sum(trials_done) > 0 FROM estimates WHERE campaign_id = $third" t
timeout 60 "$PVF" coordinator --db "$db" --bind "ipc://$T/co2.sock" --campaign "$third" \
    --exit-when-done >"$T/co2.out" 2>"$T/co2.err" && rc=0 || rc=$?
expect "a second coordinator is refused the campaign (exit 1)" test "$rc" = 1
expect "... saying another coordinator serves it" \
    grep -q "served by another coordinator" "$T/co2.err"
"$PVF" campaign cancel "$third" --db "$db" >/dev/null

# The outcome threshold is part of a campaign (DLRM only).
"$PVF" campaign create --model "$ROOT/models/fmnist-lenet" --threshold 0.1 --db "$db" \
    >/dev/null 2>"$T/thr.err" && rc=0 || rc=$?
expect "--threshold on a classifier is refused (exit 1)" test "$rc" = 1
expect "... naming the architecture" grep -q "architecture 'lenet' judges the top-1 class" "$T/thr.err"
a=$("$PVF" campaign create --model "$ROOT/models/dlrm-synth" --strata component --db "$db")
b=$("$PVF" campaign create --model "$ROOT/models/dlrm-synth" --strata component --threshold 0.05 \
    --db "$db")
expect "a threshold makes a different campaign" test "$a" != "$b"
expect "... that carries it" test "$(q "SELECT (spec->>'threshold')::float8 = 0.05 FROM campaigns WHERE id = $b")" = t
"$PVF" campaign cancel "$a" --db "$db" >/dev/null
"$PVF" campaign cancel "$b" --db "$db" >/dev/null

summary
