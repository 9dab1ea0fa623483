#!/usr/bin/env bash
# cli_pgserver.sh PVF REPO_ROOT - pvf db start|status|dsn|stop on the private
# server under a temporary PVF_HOME, and the database commands finding it
# (started again when stopped) when neither --db nor PVF_DB is given.
source "$(dirname "$0")/lib_cli.sh" cli_pgserver.sh "$@"
chmod 711 "$T" # as root the server runs as postgres, who must reach the home
export PVF_HOME=$T/home
unset PVF_DB
trap '"$PVF" db stop >/dev/null 2>&1; rm -rf "$T"' EXIT

# expect NAME CODE PATTERN PVF_ARGS... - exit CODE, stdout+stderr matching PATTERN
expect() {
    local name=$1 code=$2 pat=$3 rc
    shift 3
    (timeout 120 "$PVF" "$@" >"$T/out" 2>&1 </dev/null; exit $?) 2>/dev/null
    rc=$?
    if [ "$rc" -ne "$code" ]; then
        fail "$name" "pvf $* exited $rc, expected $code: $(head -c 300 "$T/out" | tr '\n' '|')"
    elif ! grep -qE -e "$pat" "$T/out"; then
        fail "$name" "output '$(head -c 300 "$T/out" | tr '\n' '|')' does not match '$pat'"
    else
        ok "$name"
    fi
}

DSN="host=$PVF_HOME/postgres port=5432 dbname=pvf user=pvf"
expect status_none 1 "^pvf db status: no private server under $PVF_HOME" db status
expect dsn_none 1 "^pvf db dsn: no private server under $PVF_HOME" db dsn
expect report_none 1 "^pvf report: no database: pass --db, set PVF_DB or run pvf run first$" \
    report --campaign 1
expect start 0 "^running: $DSN$" db start
expect status_running 0 "^running: $DSN$" db status
expect dsn 0 "^$DSN$" db dsn
expect migrated 0 "^applied 0 migrations" db migrate
expect list_private 0 "^id +created +model" campaign list
expect stop 0 "^stopped: $PVF_HOME/postgres$" db stop
expect status_stopped 3 "^stopped: $DSN$" db status
expect stop_again 0 "^stopped: " db stop
# a command that needs the database starts the stopped server
expect list_restarts 0 "^id +created +model" campaign list
expect status_restarted 0 "^running: " db status
expect status_extra 2 "unexpected argument 'x'" db status x
expect stop_final 0 "^stopped: " db stop

summary
