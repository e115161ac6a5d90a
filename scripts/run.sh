#!/usr/bin/env bash
# `make run`: the sandbox APIs + Airflow standalone with the ml-connector DAGs, connections and pools from
# airflow_settings.yaml, every DAG of dags/ unpaused. Ctrl-C (or SIGTERM) stops everything it started.
# Ports: AIRFLOW_PORT (8080); one sandbox port per vendor of ml_connector.registry from 8101 (UPS 8101,
# Business Central 8102), each overridable with SANDBOX_PORT_<VENDOR> (e.g. SANDBOX_PORT_UPS=9101).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
PORT="${AIRFLOW_PORT:-8080}"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"
LOG_PORT="${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-8793}"
TRIGGER_LOG_PORT="${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-8794}"

SANDBOX_ARGS=()
SANDBOX_LINES=""
while read -r vendor port name; do
  require_free_port "$port" "$name sandbox" "SANDBOX_PORT_${vendor^^}"
  SANDBOX_ARGS+=(--port "$vendor=$port")
  SANDBOX_LINES+="$name http://127.0.0.1:$port  "
done < <(python -m ml_connector_sandbox.devtools sandbox-ports)
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

start_sandbox "$AIRFLOW_HOME/sandbox-ports.json" "${SANDBOX_ARGS[@]}"
echo "sandbox APIs: $(tr -d '\n ' < "$AIRFLOW_HOME/sandbox-ports.json")"

airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
pin_airflow_cfg
python -m ml_connector_sandbox.devtools import-connections airflow_settings.yaml \
  --sandbox-ports "$AIRFLOW_HOME/sandbox-ports.json"
# the pools the pipelines name (carrier_pool, erp_pool): a task in a pool that does not exist is never scheduled
python -m ml_connector_sandbox.devtools import-pools airflow_settings.yaml

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
echo "Airflow API answers after $((SECONDS - STARTED)) s; waiting for the DAGs to be parsed to unpause them ..."
# every file in dags/ defines the DAG of its own name (tests/dags/test_integrity.py checks it)
DAG_IDS=$(cd dags && ls -- *.py | sed 's/\.py$//' | grep -v '^_' || true)
# an unpaused DAG first runs the last complete interval: move each ERP sandbox's seeded documents into it, so the
# first runs show labels, write-backs and the broken seed documents quarantined (red lanes) at once
python -m ml_connector_sandbox.devtools place-for-first-runs --sandbox-ports "$AIRFLOW_HOME/sandbox-ports.json" \
  > "$AIRFLOW_HOME/place.log" 2>&1 || { echo "warning: could not place the sandbox documents (see $AIRFLOW_HOME/place.log)"; }
UNPAUSED=""
PAUSED=""
for dag_id in $DAG_IDS; do
  ok=""
  for _ in $(seq 1 60); do
    if airflow dags unpause "$dag_id" > "$AIRFLOW_HOME/unpause.log" 2>&1; then ok=yes; break; fi
    kill -0 "$AIRFLOW_PID" 2>/dev/null || { echo "airflow standalone exited:"; tail -50 "$AIRFLOW_HOME/standalone.log"; exit 1; }
    sleep 2
  done
  if [ -n "$ok" ]; then UNPAUSED+="$dag_id "; else PAUSED+="$dag_id "; fi
done
[ -z "$PAUSED" ] || echo "warning: could not unpause $PAUSED(see $AIRFLOW_HOME/unpause.log; DAG import errors show in the UI)"
CONN_IDS=$(python -c "import sys, yaml; print(''.join(c['conn_id'] + ' ' for c in yaml.safe_load(open(sys.argv[1]))['airflow']['connections'] if c['conn_type'] != 'sqlite'))" airflow_settings.yaml)
PASSWORD=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['admin'])" \
  "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated" 2>/dev/null || echo "(see $AIRFLOW_HOME/standalone.log)")
cat <<MSG

  Airflow UI:  http://localhost:$PORT   (ready after $((SECONDS - STARTED)) s)
  login:       admin / $PASSWORD
  DAGs:        ${UNPAUSED:-none}unpaused${PAUSED:+; PAUSED: $PAUSED} (scheduled ones run every 15 minutes against the sandbox)
  sandbox:     $SANDBOX_LINES
  connections: Admin > Connections: $CONN_IDS(their Test button works)
  pools:       Admin > Pools: one per API (ml_connector_ups, ...), shared by every DAG that names it
  ledger:      .venv/bin/python -m ml_connector_sandbox.devtools report <pipeline, e.g. business_central_ups> --ledger-url sqlite:///$ROOT/.airflow/ml_connector_ledger.db
  logs:        $AIRFLOW_HOME/standalone.log
  Ctrl-C stops Airflow and the sandbox.

MSG
# returns when Airflow exits on its own, or at once when a signal runs the trap
wait "$AIRFLOW_PID" || true
