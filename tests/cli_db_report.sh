#!/usr/bin/env bash
# cli_db_report.sh PVF REPO_ROOT - pvf db migrate, pvf report and pvf campaign
# against the throw-away server of the ctest fixture "pg" (DSN in the file
# $PVF_TEST_DSN_FILE), in a database of its own. The campaigns are written
# with psql; every figure pvf prints is compared with the views' own.
source "$(dirname "$0")/lib_cli.sh" cli_db_report.sh "$@"

SERVER=$(cat "${PVF_TEST_DSN_FILE:?run under ctest (fixture pg)}") || exit 1
DBNAME=pvft_cli_$$
psql "$SERVER" -qAtc "CREATE DATABASE $DBNAME" || exit 1
trap 'psql "$SERVER" -qAtc "DROP DATABASE IF EXISTS $DBNAME" >/dev/null 2>&1; rm -rf "$T"' EXIT
DB="$SERVER dbname=$DBNAME"
# No private server may be used by accident: an empty home, no PVF_DB.
unset PVF_DB
export PVF_HOME=$T/home

sql() { psql "$DB" -qAt -v ON_ERROR_STOP=1 "$@"; }

# refuse NAME CODE PATTERN PVF_ARGS... - expects exit CODE and one stderr
# line matching PATTERN (grep -E), nothing on stdout.
refuse() {
    local name=$1 code=$2 pat=$3 rc
    shift 3
    (timeout 60 "$PVF" "$@" >"$T/r.out" 2>"$T/r.err" </dev/null; exit $?) 2>/dev/null
    rc=$?
    if [ "$rc" -ne "$code" ]; then
        fail "$name" "pvf $* exited $rc, expected $code: $(head -c 200 "$T/r.err" | tr '\n' '|')"
    elif [ "$(wc -l <"$T/r.err")" -ne 1 ] || ! grep -qE -e "$pat" "$T/r.err"; then
        fail "$name" "stderr '$(tr '\n' '|' <"$T/r.err")' does not match '$pat'"
    elif [ -s "$T/r.out" ]; then
        fail "$name" "wrote to stdout: $(head -c 200 "$T/r.out")"
    else
        ok "$name"
    fi
}

# ---- migrate ----------------------------------------------------------------
refuse no_database 1 "no database: pass --db, set PVF_DB or run pvf run first" db migrate
if run migrate "$T/m1" db migrate --db "$DB" && run migrate_again "$T/m2" db migrate --db "$DB"; then
    if grep -q "^applied [1-9][0-9]* migrations" "$T/m1" && grep -q "^applied 0 migrations" "$T/m2" &&
        [ "$(sql -c 'SELECT count(*) FROM pvf_schema_version')" -ge 2 ]; then
        ok migrate
    else
        fail migrate "$(cat "$T/m1" "$T/m2" | tr '\n' '|')"
    fi
fi
refuse migrate_bad_dsn 1 "cannot connect to the database \(host /nonexistent/pvf" \
    db migrate --db "host=/nonexistent/pvf dbname=x"

# ---- two small campaigns ------------------------------------------------------
# A: tensor-bit strata over two tensors; B: component strata with trial rows.
sql <<'SQL' || exit 1
INSERT INTO campaigns (id, spec_hash, spec, model_dir, format, fault, strata_kind, confidence,
                       margin, max_trials)
VALUES (101, 'a', '{"seed": 1}', 'models/a', 'fp32', 'bit', 'tensor-bit', 0.95, 0.01, 400),
       (102, 'b', '{"seed": 2}', 'models/b', 'int8', 'bit', 'component', 0.95, 0.02, 300);
INSERT INTO strata (campaign_id, stratum, name, tensor, component, bit, targets, population,
                    weight, max_trials)
SELECT 101, h, t || '/' || b, t, c, b, ARRAY[t], p, p / 7560.0, 400
FROM (VALUES (0, 'fc1.weight', 'fc1', 30, 2400), (1, 'fc1.weight', 'fc1', 31, 2400),
             (2, 'fc2, "odd"', 'fc2', 30, 1380), (3, 'fc2, "odd"', 'fc2', 31, 1380))
     AS s (h, t, c, b, p);
INSERT INTO estimates (campaign_id, stratum, trials_done, trials_used, estimate, lo, hi, stopped,
                       converged, stop_reason)
VALUES (101, 0, 400, 400, 0.0125, 0.004, 0.03, true, false, 'cap'),
       (101, 1, 250, 240, 0.31, 0.25, 0.37, true, true, 'margin'),
       (101, 2, 400, 400, 0.02, 0.008, 0.045, true, false, 'cap'),
       (101, 3, 120, 120, 0.5, 0.35, 0.65, false, false, NULL);
INSERT INTO strata (campaign_id, stratum, name, tensor, component, bit, targets, population,
                    weight, max_trials)
VALUES (102, 0, 'attn', NULL, 'attn', NULL, '{q.weight,k.weight}', 8000, 0.4, 300),
       (102, 1, 'mlp', NULL, 'mlp', NULL, '{up.weight}', 12000, 0.6, 300);
INSERT INTO estimates (campaign_id, stratum, trials_done, trials_used, estimate, lo, hi, stopped,
                       converged, stop_reason)
VALUES (102, 0, 300, 300, 0.1, 0.05, 0.17, true, false, 'cap'),
       (102, 1, 200, 200, 0.05, 0.02, 0.09, true, true, 'margin');
INSERT INTO trials (campaign_id, stratum, trial, tensor, element, mask, old_word, new_word, value,
                    incorrect, nonfinite, flags, attempt)
SELECT 102, h, g, CASE WHEN h = 1 THEN 'up.weight' WHEN g % 3 = 0 THEN 'k.weight'
                       ELSE 'q.weight' END,
       g, 1::bigint << (g % 8), 0, 0, CASE WHEN g % 5 = 0 THEN 0.25 ELSE 0 END, 0, 0, 0, 1
FROM generate_series(0, 299) g, generate_series(0, 1) h
WHERE h = 0 OR g < 200;
SQL

# ---- report: json and csv against the views -----------------------------------
for by in stratum tensor component bit; do
    for c in 101 102; do
        sql -F $'\t' -c "SELECT $by, trials_used, estimate, lo, hi, stopped, converged
                         FROM pvf_${by}_estimate WHERE campaign_id = $c ORDER BY $by" >"$T/want_${c}_$by"
        sql -F $'\t' -c "SELECT trials_used, estimate, lo, hi, stopped, converged, strata,
                         strata_stopped FROM pvf_campaign_progress WHERE campaign_id = $c" \
            >"$T/model_$c"
        run "report_json_${c}_$by" "$T/r.json" report --db "$DB" --campaign $c --by $by \
            --format json &&
            check "report_json_${c}_$by" "$T/r.json" "$T/want_${c}_$by" "$T/model_$c" $by <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
by = sys.argv[4]
want = [l.split("\t") for l in open(sys.argv[2]).read().splitlines()]
def same(a, b, kind):
    if kind == "b":
        return a is (b == "t")
    if b == "":
        return a is None
    if kind == "f":
        return a is not None and abs(a - float(b)) <= 1e-12 * max(1, abs(float(b)))
    return str(a) == b
assert r["by"] == by, r["by"]
assert len(r["rows"]) == len(want), f"{len(r['rows'])} rows, want {len(want)}"
assert len(want) > 0
for row, w in zip(r["rows"], want):
    for name, val, kind in zip([by, "trials_used", "estimate", "lo", "hi", "stopped", "converged"],
                               w, "sifffbb"):
        assert same(row[name], val, kind), f"{by} {w[0]}: {name} {row[name]!r} != {val!r}"
m = open(sys.argv[3]).read().strip().split("\t")
for name, val, kind in zip(["trials_used", "estimate", "lo", "hi", "stopped", "converged",
                            "strata", "strata_stopped"], m, "sfffbbss"):
    assert same(r["model"][name], val, kind), f"model {name} {r['model'][name]!r} != {val!r}"
PY
        run "report_csv_${c}_$by" "$T/r.csv" report --db "$DB" --campaign $c --by $by --format csv &&
            check "report_csv_${c}_$by" "$T/r.csv" "$T/want_${c}_$by" "$T/model_$c" $by <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
by = sys.argv[4]
want = [l.split("\t") for l in open(sys.argv[2]).read().splitlines()]
body = [r for r in rows if r["level"] == by]
model = [r for r in rows if r["level"] == "model"]
assert len(body) == len(want) and len(model) == 1 and rows[-1]["level"] == "model", \
    f"{len(body)} rows + {len(model)} model rows, want {len(want)} + 1"
def same(a, b, kind):
    if kind == "f" and a and b:
        return abs(float(a) - float(b)) <= 1e-12 * max(1, abs(float(b)))
    return a == b
for row, w in zip(body, want):
    for name, val, kind in zip([by, "trials_used", "estimate", "lo", "hi", "stopped", "converged"],
                               w, "sifffbb"):
        assert same(row[name], val, kind), f"{by} {w[0]}: {name} {row[name]!r} != {val!r}"
m = open(sys.argv[3]).read().strip().split("\t")
for name, val, kind in zip(["trials_used", "estimate", "lo", "hi", "stopped", "converged"], m,
                           "sfffbb"):
    assert same(model[0][name], val, kind), f"model {name} {model[0][name]!r} != {val!r}"
PY
    done
done

# the table names the campaign, the tensor with a comma and quotes, the model
if run report_table "$T/r.txt" report --db "$DB" --campaign 101 --by tensor; then
    if grep -q '^campaign 101 (running): model models/a, format fp32' "$T/r.txt" &&
        grep -q '^fc2, "odd"' "$T/r.txt" && grep -q '^model-level PVF ' "$T/r.txt"; then
        ok report_table
    else
        fail report_table "$(tr '\n' '|' <"$T/r.txt")"
    fi
fi
# PVF_DB stands in for --db
if PVF_DB=$DB run report_env "$T/r.env" report --campaign 101 --format csv; then
    if [ "$(grep -c '^stratum,' "$T/r.env")" -eq 4 ]; then ok report_env; else fail report_env "$(head -3 "$T/r.env")"; fi
fi

refuse report_unknown 1 "^pvf report: no campaign 999$" report --db "$DB" --campaign 999
refuse report_no_campaign 2 "--campaign ID is required" report --db "$DB"
refuse report_bad_id 2 "--campaign: 'x' is not an integer" report --db "$DB" --campaign x
refuse report_bad_by 2 "--by: unknown grouping 'row'" report --db "$DB" --campaign 101 --by row
refuse report_bad_format 2 "--format: unknown output format 'xml'" report --db "$DB" --campaign 101 --format xml
refuse report_bad_flag 2 "unknown flag '--frob'" report --db "$DB" --campaign 101 --frob
refuse report_positional 2 "unexpected argument 'extra'" report --db "$DB" --campaign 101 extra

# ---- campaign list / show -------------------------------------------------------
if run campaign_list "$T/l.json" campaign list --db "$DB" --format json; then
    check campaign_list "$T/l.json" <<'PY'
import json, sys
l = json.load(open(sys.argv[1]))
assert [c["id"] for c in l] == [102, 101], [c["id"] for c in l]
a = l[1]
assert a["model"] == "models/a" and a["format"] == "fp32" and a["fault"] == "bit", a
assert a["strata"] == 4 and a["strata_stopped"] == 3 and a["state"] == "running", a
w = [2400 / 7560, 2400 / 7560, 1380 / 7560, 1380 / 7560]
e = [0.0125, 0.31, 0.02, 0.5]
assert abs(a["estimate"] - sum(x * y for x, y in zip(w, e))) < 1e-12, a["estimate"]
PY
fi
if run campaign_list_table "$T/l.txt" campaign list --db "$DB"; then
    if head -1 "$T/l.txt" | grep -qE '^id +created' && grep -qE '^ *101 .*models/a' "$T/l.txt"; then
        ok campaign_list_table
    else
        fail campaign_list_table "$(tr '\n' '|' <"$T/l.txt")"
    fi
fi
if run campaign_show "$T/s.json" campaign show 101 --db "$DB" --format json; then
    check campaign_show "$T/s.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["campaign_id"] == 101 and s["spec"] == {"seed": 1}, s
assert s["strata_kind"] == "tensor-bit" and s["max_trials"] == 400 and s["stopped"] is False, s
PY
fi
if run campaign_show_table "$T/s.txt" campaign show 102 --db "$DB"; then
    if grep -qE '^strata_kind +component$' "$T/s.txt"; then ok campaign_show_table; else fail campaign_show_table "$(tr '\n' '|' <"$T/s.txt")"; fi
fi

# ---- cancel / extend ------------------------------------------------------------
if run campaign_cancel "$T/c.txt" campaign cancel 101 --db "$DB"; then
    got=$(sql -c "SELECT state, finished_at IS NOT NULL FROM campaigns WHERE id = 101;
                  SELECT string_agg(stratum || ':' || stopped || ':' || coalesce(stop_reason, '-'), ' '
                                    ORDER BY stratum) FROM estimates WHERE campaign_id = 101" | tr '\n' ' ')
    # stratum 3 was running: now stopped by the cancel; the others keep their reason
    if [ "$got" = "cancelled|t 0:true:cap 1:true:margin 2:true:cap 3:true:cancelled " ]; then
        ok campaign_cancel
    else
        fail campaign_cancel "got '$got'"
    fi
fi
if run campaign_extend "$T/e.txt" campaign extend 101 --max-trials 2000 --db "$DB"; then
    got=$(sql -c "SELECT state, max_trials, finished_at IS NULL FROM campaigns WHERE id = 101;
                  SELECT string_agg(stratum || ':' || stopped || ':' || coalesce(stop_reason, '-') || ':' || max_trials, ' '
                                    ORDER BY stratum) FROM pvf_stratum_estimate WHERE campaign_id = 101" | tr '\n' ' ')
    # capped and cancelled strata resume; the converged one stays stopped
    if [ "$got" = "running|2000|t 0:false:-:2000 1:true:margin:2000 2:false:-:2000 3:false:-:2000 " ]; then
        ok campaign_extend
    else
        fail campaign_extend "got '$got'"
    fi
fi
refuse extend_lower 1 "--max-trials 100 is below its current cap 2000" campaign extend 101 --max-trials 100 --db "$DB"
refuse extend_no_max 2 "--max-trials N is required" campaign extend 101 --db "$DB"
refuse extend_bad_max 2 "--max-trials: '0' is not an integer" campaign extend 101 --max-trials 0 --db "$DB"
refuse cancel_unknown 1 "^pvf campaign cancel: no campaign 999$" campaign cancel 999 --db "$DB"
refuse show_unknown 1 "^pvf campaign show: no campaign 999$" campaign show 999 --db "$DB"
refuse extend_unknown 1 "^pvf campaign extend: no campaign 999$" campaign extend 999 --max-trials 5 --db "$DB"
refuse show_no_id 2 "expected a campaign ID after 'show'" campaign show --db "$DB"
refuse campaign_unknown_sub 2 "unknown subcommand 'frob'" campaign frob
refuse campaign_create_no_model 2 "campaign create: --model DIR is required" campaign create --db "$DB"
refuse campaign_create_bad_strata 2 "--strata: .frob. is not" campaign create --model "$ROOT/models/fmnist-lenet" --strata frob --db "$DB"
refuse campaign_create_bad_margin 2 "--margin: .2. is not a number in" campaign create --model "$ROOT/models/fmnist-lenet" --margin 2 --db "$DB"
refuse campaign_create_bitstrata_kbit 1 "needs a fault model with a uniform bit" campaign create --model "$ROOT/models/fmnist-lenet" --strata tensor-bit --fault kbit:2 --db "$DB"
sql -c "UPDATE campaigns SET state = 'done' WHERE id = 102"
refuse cancel_done 1 "campaign 102 is done" campaign cancel 102 --db "$DB"
refuse db_unknown_sub 2 "unknown subcommand 'frob'" db frob

summary
