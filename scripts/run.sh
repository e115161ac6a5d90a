#!/usr/bin/env bash
# `make run`: the sandbox APIs + Airflow standalone with the ml-connector DAGs, connections from
# airflow_settings.yaml, the Business Central -> UPS DAG unpaused. Ctrl-C stops everything it started.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
PORT="${AIRFLOW_PORT:-8080}"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"

start_sandbox "$AIRFLOW_HOME/sandbox-ports.json" --port ups=8101 --port business_central=8102
AIRFLOW_PID=""
cleanup() {
  [ -n "$AIRFLOW_PID" ] && kill "$AIRFLOW_PID" 2>/dev/null && wait "$AIRFLOW_PID" 2>/dev/null || true
  kill "$SANDBOX_PID" 2>/dev/null && wait "$SANDBOX_PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
echo "sandbox APIs: $(cat "$AIRFLOW_HOME/sandbox-ports.json")"

airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
python -m ml_connector.devtools import-connections airflow_settings.yaml \
  --sandbox-ports "$AIRFLOW_HOME/sandbox-ports.json"

airflow standalone > "$AIRFLOW_HOME/standalone.log" 2>&1 &
AIRFLOW_PID=$!
echo "starting Airflow (log: $AIRFLOW_HOME/standalone.log) ..."
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$PORT/api/v2/version" >/dev/null 2>&1 && break
  kill -0 "$AIRFLOW_PID" 2>/dev/null || { tail -50 "$AIRFLOW_HOME/standalone.log"; exit 1; }
  sleep 2
done
for _ in $(seq 1 60); do
  airflow dags unpause business_central_ups >/dev/null 2>&1 && break
  sleep 3
done
PASSWORD=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['admin'])" \
  "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated" 2>/dev/null || echo "(see $AIRFLOW_HOME/standalone.log)")
cat <<MSG

  Airflow UI:  http://localhost:$PORT
  login:       admin / $PASSWORD
  DAG:         business_central_ups (unpaused; runs every 15 minutes against the sandbox)
  ledger:      python -m ml_connector.devtools report business_central_ups
  Ctrl-C stops Airflow and the sandbox.

MSG
wait "$AIRFLOW_PID"
