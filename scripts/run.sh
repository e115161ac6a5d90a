#!/usr/bin/env bash
# `make run`: the sandbox APIs + Airflow standalone with the ml-connector DAGs, connections from
# airflow_settings.yaml, the Business Central -> UPS DAG unpaused. Ctrl-C (or SIGTERM) stops everything it
# started. Ports: AIRFLOW_PORT (8080), UPS_SANDBOX_PORT (8101), BC_SANDBOX_PORT (8102).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
PORT="${AIRFLOW_PORT:-8080}"
UPS_PORT="${UPS_SANDBOX_PORT:-8101}"
BC_PORT="${BC_SANDBOX_PORT:-8102}"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"
LOG_PORT="${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-8793}"
TRIGGER_LOG_PORT="${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-8794}"

require_free_port "$UPS_PORT" "UPS sandbox" UPS_SANDBOX_PORT
require_free_port "$BC_PORT" "Business Central sandbox" BC_SANDBOX_PORT
require_free_port "$PORT" "Airflow UI and API" AIRFLOW_PORT
require_free_port "$LOG_PORT" "Airflow scheduler log server" AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT
require_free_port "$TRIGGER_LOG_PORT" "Airflow triggerer log server" AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT

SANDBOX_PID=""
AIRFLOW_PID=""
cleanup() {
  trap - EXIT
  trap '' INT TERM  # a second Ctrl-C must not abandon the shutdown half-way (stop_group has its own timeouts)
  if [ -n "$AIRFLOW_PID" ]; then
    echo "stopping Airflow (process group $AIRFLOW_PID) ..."
    stop_group "$AIRFLOW_PID"
  fi
  stop_pid "$SANDBOX_PID"
  echo "stopped."
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_sandbox "$AIRFLOW_HOME/sandbox-ports.json" --port "ups=$UPS_PORT" --port "business_central=$BC_PORT"
echo "sandbox APIs: $(tr -d '\n ' < "$AIRFLOW_HOME/sandbox-ports.json")"

airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
pin_airflow_cfg
python -m ml_connector_sandbox.devtools import-connections airflow_settings.yaml \
  --sandbox-ports "$AIRFLOW_HOME/sandbox-ports.json"

start_group airflow standalone > "$AIRFLOW_HOME/standalone.log" 2>&1
AIRFLOW_PID=$GROUP_PID
echo "starting Airflow on port $PORT (log: $AIRFLOW_HOME/standalone.log) ..."
STARTED=$SECONDS
until curl -fs "http://127.0.0.1:$PORT/api/v2/version" >/dev/null 2>&1; do
  kill -0 "$AIRFLOW_PID" 2>/dev/null || { echo "airflow standalone exited:"; tail -50 "$AIRFLOW_HOME/standalone.log"; exit 1; }
  if [ $((SECONDS - STARTED)) -gt 240 ]; then
    echo "the Airflow API did not answer on port $PORT within 240 s:"; tail -50 "$AIRFLOW_HOME/standalone.log"; exit 1
  fi
  sleep 1
done
echo "Airflow API answers after $((SECONDS - STARTED)) s; waiting for the DAG to be parsed to unpause it ..."
UNPAUSED=""
for _ in $(seq 1 60); do
  if airflow dags unpause business_central_ups > "$AIRFLOW_HOME/unpause.log" 2>&1; then UNPAUSED=yes; break; fi
  kill -0 "$AIRFLOW_PID" 2>/dev/null || { echo "airflow standalone exited:"; tail -50 "$AIRFLOW_HOME/standalone.log"; exit 1; }
  sleep 2
done
[ -n "$UNPAUSED" ] || echo "warning: could not unpause business_central_ups (see $AIRFLOW_HOME/unpause.log; DAG import errors show in the UI)"
PASSWORD=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['admin'])" \
  "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated" 2>/dev/null || echo "(see $AIRFLOW_HOME/standalone.log)")
cat <<MSG

  Airflow UI:  http://localhost:$PORT   (ready after $((SECONDS - STARTED)) s)
  login:       admin / $PASSWORD
  DAG:         business_central_ups ($([ -n "$UNPAUSED" ] && echo unpaused || echo PAUSED); runs every 15 minutes against the sandbox)
  sandbox:     UPS http://127.0.0.1:$UPS_PORT, Business Central http://127.0.0.1:$BC_PORT
  connections: Admin > Connections: ups_default, business_central_default (their Test button works)
  ledger:      .venv/bin/python -m ml_connector_sandbox.devtools report business_central_ups --ledger-url sqlite:///$ROOT/.airflow/ml_connector_ledger.db
  logs:        $AIRFLOW_HOME/standalone.log
  Ctrl-C stops Airflow and the sandbox.

MSG
# returns when Airflow exits on its own, or at once when a signal runs the trap
wait "$AIRFLOW_PID" || true
