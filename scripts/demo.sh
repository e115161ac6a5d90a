#!/usr/bin/env bash
# `make demo`: one `airflow dags test` of each pipeline of include/pipelines.yaml (DEMO_PIPELINES to choose)
# against a fresh sandbox, then each ledger table.
set -euo pipefail
ML_CONNECTOR_AIRFLOW_HOME="$(cd "$(dirname "$0")/.." && pwd)/.airflow/demo"
. "$(dirname "$0")/env.sh"
cd "$ROOT"
PIPELINES="${DEMO_PIPELINES:-$(python -m ml_connector_sandbox.devtools pipelines)}"
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
# no pools here: `airflow dags test` runs every task whatever its pool (make run creates them for the scheduler)
eval "$(python -m ml_connector_sandbox.devtools connections-env airflow_settings.yaml \
  --sandbox-ports "$AIRFLOW_HOME/sandbox-ports.json")"
AIRFLOW_CONN_ML_CONNECTOR_LEDGER="$(python -c 'import json, sys; print(json.dumps({"conn_type": "sqlite", "host": sys.argv[1]}))' "$LEDGER")"
export AIRFLOW_CONN_ML_CONNECTOR_LEDGER

# `airflow dags test DAG DATE` runs the last complete data interval before DATE (CronDataIntervalTimetable),
# while each ERP sandbox seeds its documents minutes to days before it started. Move the seeded released
# documents (all but the one each sandbox keeps 3 days old) into that interval through the sandbox's control
# endpoints.
for PIPELINE in $PIPELINES; do
RUN_AT="$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
INTERVAL="$(python -m ml_connector_sandbox.devtools data-interval "$PIPELINE" --at "$RUN_AT")" \
  || { echo "could not compute the data interval of $PIPELINE at $RUN_AT"; exit 1; }
read -r START END <<< "$INTERVAL"
python -m ml_connector_sandbox.devtools place-sandbox-orders --sandbox-ports "$AIRFLOW_HOME/sandbox-ports.json" \
  --into-interval-ending "$END" --pipeline "$PIPELINE"

echo "airflow dags test $PIPELINE $RUN_AT  (data interval $START .. $END; log: $AIRFLOW_HOME/dags-test-$PIPELINE.log)"
TIMEOUT=()
command -v timeout >/dev/null && TIMEOUT=(timeout --kill-after=30 "${DEMO_TIMEOUT:-900}")
if ${TIMEOUT[@]+"${TIMEOUT[@]}"} airflow dags test "$PIPELINE" "$RUN_AT" > "$AIRFLOW_HOME/dags-test-$PIPELINE.log" 2>&1; then
  echo "run finished: success (green)"
else
  rc=$?
  if grep -q "DagRun failed" "$AIRFLOW_HOME/dags-test-$PIPELINE.log"; then
    # the seeded broken orders are new quarantines: the report step turns the run red and says why
    echo "run finished: failed (red) -" \
         "$(grep -oE 'this run is red \(seen [^)]*\)|[0-9]+ ShipStation order\(s\) could not be booked' "$AIRFLOW_HOME/dags-test-$PIPELINE.log" | head -1 || echo 'see the report task in the log')"
  else
    echo "airflow dags test exited with $rc; see $AIRFLOW_HOME/dags-test-$PIPELINE.log"
    [ "$rc" = 124 ] && echo "(it hit DEMO_TIMEOUT=${DEMO_TIMEOUT:-900}s: a task was waiting out its retry delay)"
  fi
fi
echo
python -m ml_connector_sandbox.devtools report "$PIPELINE"
echo
done
