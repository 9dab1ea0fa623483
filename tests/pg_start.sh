#!/usr/bin/env bash
# pg_start.sh DIR - starts a throw-away PostgreSQL cluster for the tests and
# writes its DSN (unix socket, user pvf, database postgres) to DIR/dsn and its
# data directory to DIR/datadir. As root the cluster runs as the postgres
# user, in a mktemp -d under /tmp that it owns (root's own trees may not be
# traversable by postgres). Stop it with pg_stop.sh DIR.
set -euo pipefail
dir=${1:?usage: pg_start.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/pg_ctl" ] || { echo "pg_start.sh: no PostgreSQL server under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2; exit 1; }

# A cluster left by an interrupted run is stopped first.
[ -f "$dir/datadir" ] && bash "$(dirname "$0")/pg_stop.sh" "$dir" || true

data=$(mktemp -d /tmp/pvf-pg.XXXXXX)
as=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$data"
    as=(runuser -u postgres --)
fi
chmod 700 "$data"
echo "$data" >"$dir/datadir"
cd /
"${as[@]}" "$bin/initdb" -D "$data/db" -U pvf --auth=trust -E UTF8 --no-sync >"$data/initdb.log" 2>&1 ||
    { cat "$data/initdb.log" >&2; exit 1; }
cat >>"$data/db/postgresql.conf" <<CONF
listen_addresses = ''
port = 5432
unix_socket_directories = '$data'
fsync = off
max_connections = 50
CONF
"${as[@]}" "$bin/pg_ctl" -D "$data/db" -l "$data/log" -w -t 60 start >/dev/null ||
    { cat "$data/log" >&2; exit 1; }
# the port names the socket; fixed on both sides, whatever PGPORT says
echo "host=$data port=5432 dbname=postgres user=pvf" >"$dir/dsn"
