#!/usr/bin/env bash
# pg_stop.sh DIR - stops the cluster pg_start.sh DIR started and removes it.
set -uo pipefail
dir=${1:?usage: pg_stop.sh DIR}
[ -f "$dir/datadir" ] || exit 0
data=$(cat "$dir/datadir")
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
as=()
[ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
if [ -d "$data/db" ]; then
    (cd / && "${as[@]}" "$bin/pg_ctl" -D "$data/db" -m fast -w stop >/dev/null 2>&1)
fi
case "$data" in /tmp/pvf-pg.*) rm -rf "$data" ;; esac
rm -f "$dir/datadir" "$dir/dsn"
