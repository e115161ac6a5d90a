#!/usr/bin/env bash
# `make demo`: one `airflow dags test` of each pipeline (business_central_ups, exact_online_ups) against a fresh sandbox, then the ledger table.
set -euo pipefail
ML_CONNECTOR_AIRFLOW_HOME="$(cd "$(dirname "$0")/.." && pwd)/.airflow/demo"
. "$(dirname "$0")/env.sh"
cd "$ROOT"
PIPELINE=business_central_ups
LEDGER="$AIRFLOW_HOME/ml_connector_ledger.db"
# a fresh ledger and label folder each time (with SQLite's WAL side files: a stale -wal would be replayed)
rm -rf "$LEDGER" "$LEDGER-wal" "$LEDGER-shm" "$LEDGER-journal" "$AIRFLOW_HOME/ml_connector_labels"

SANDBOX_PID=""
trap 'stop_pid "$SANDBOX_PID"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start_sandbox "$AIRFLOW_HOME/sandbox-ports.json"
echo "sandbox APIs: $(tr -d '\n ' < "$AIRFLOW_HOME/sandbox-ports.json")"

airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
pin_airflow_cfg
eval "$(python -m ml_connector_sandbox.devtools connections-env airflow_settings.yaml \
  --sandbox-ports "$AIRFLOW_HOME/sandbox-ports.json")"
AIRFLOW_CONN_ML_CONNECTOR_LEDGER="$(python -c 'import json, sys; print(json.dumps({"conn_type": "sqlite", "host": sys.argv[1]}))' "$LEDGER")"
export AIRFLOW_CONN_ML_CONNECTOR_LEDGER

# `airflow dags test DAG DATE` runs the last complete data interval before DATE (CronDataIntervalTimetable),
# while the sandbox seeds its orders 5-170 minutes before it started. Move the seeded released orders (all
# but S-ORD101011, which stays 3 days old) into that interval through the sandbox's control endpoint.
RUN_AT="$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
INTERVAL="$(python -m ml_connector_sandbox.devtools data-interval "$PIPELINE" --at "$RUN_AT")" \
  || { echo "could not compute the data interval of $PIPELINE at $RUN_AT"; exit 1; }
read -r START END <<< "$INTERVAL"
python -m ml_connector_sandbox.devtools place-sandbox-orders --sandbox-ports "$AIRFLOW_HOME/sandbox-ports.json" \
  --into-interval-ending "$END"

echo "airflow dags test $PIPELINE $RUN_AT  (data interval $START .. $END; log: $AIRFLOW_HOME/dags-test.log)"
TIMEOUT=()
command -v timeout >/dev/null && TIMEOUT=(timeout --kill-after=30 "${DEMO_TIMEOUT:-900}")
if ${TIMEOUT[@]+"${TIMEOUT[@]}"} airflow dags test "$PIPELINE" "$RUN_AT" > "$AIRFLOW_HOME/dags-test.log" 2>&1; then
  echo "run finished: success (green)"
else
  rc=$?
  if grep -q "DagRun failed" "$AIRFLOW_HOME/dags-test.log"; then
    # the seeded broken orders are new quarantines: the report step turns the run red and says why
    echo "run finished: failed (red) -" \
         "$(grep -o 'this run is red (seen [^)]*)' "$AIRFLOW_HOME/dags-test.log" | head -1 || echo 'see the report task in the log')"
  else
    echo "airflow dags test exited with $rc; see $AIRFLOW_HOME/dags-test.log"
    [ "$rc" = 124 ] && echo "(it hit DEMO_TIMEOUT=${DEMO_TIMEOUT:-900}s: a task was waiting out its retry delay)"
  fi
fi
echo
python -m ml_connector_sandbox.devtools report "$PIPELINE"

# -- Exact Online -> UPS (exact_online_ups): the same against the Exact Online sandbox's goods deliveries ----------
PIPELINE=exact_online_ups
INTERVAL="$(python -m ml_connector_sandbox.devtools data-interval "$PIPELINE" --at "$RUN_AT")" \
  || { echo "could not compute the data interval of $PIPELINE at $RUN_AT"; exit 1; }
read -r START END <<< "$INTERVAL"
python -m ml_connector_sandbox.exact_online.demo --sandbox-ports "$AIRFLOW_HOME/sandbox-ports.json" \
  --into-interval-ending "$END"
echo
echo "airflow dags test $PIPELINE $RUN_AT  (data interval $START .. $END; log: $AIRFLOW_HOME/dags-test-exact.log)"
if ${TIMEOUT[@]+"${TIMEOUT[@]}"} airflow dags test "$PIPELINE" "$RUN_AT" > "$AIRFLOW_HOME/dags-test-exact.log" 2>&1; then
  echo "run finished: success (green)"
elif grep -q "DagRun failed" "$AIRFLOW_HOME/dags-test-exact.log"; then
  echo "run finished: failed (red) -" \
       "$(grep -o 'this run is red (seen [^)]*)' "$AIRFLOW_HOME/dags-test-exact.log" | head -1 || echo 'see the report task in the log')"
else
  echo "airflow dags test exited with an error; see $AIRFLOW_HOME/dags-test-exact.log"
fi
echo
python -m ml_connector_sandbox.devtools report "$PIPELINE"
