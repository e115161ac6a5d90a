# Shared environment for `make run` / `make demo`: a project-local Airflow home, the venv first on PATH
# (airflow standalone starts its children as `airflow` from PATH), the project's DAGs and plugins, and
# generated Fernet keys (kept in .airflow/secrets.env, git-ignored, created once).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
mkdir -p "$AIRFLOW_HOME"
if [ ! -f "$AIRFLOW_HOME/secrets.env" ]; then
  umask 077
  {
    echo "export ML_CONNECTOR_FERNET_KEYS=$(python -m ml_connector.cli generate-key)"
    echo "export AIRFLOW__CORE__FERNET_KEY=$(python -m ml_connector.cli generate-key)"
  } > "$AIRFLOW_HOME/secrets.env"
fi
# shellcheck disable=SC1091
. "$AIRFLOW_HOME/secrets.env"

# start_sandbox PORTFILE [extra args]: starts the sandbox in the background, sets SANDBOX_PID, waits for it.
start_sandbox() {
  local portfile="$1"; shift
  rm -f "$portfile"
  python -m ml_connector.sandbox --host 127.0.0.1 --port-file "$portfile" "$@" > "$AIRFLOW_HOME/sandbox.log" 2>&1 &
  SANDBOX_PID=$!
  for _ in $(seq 1 100); do
    [ -s "$portfile" ] && return 0
    kill -0 "$SANDBOX_PID" 2>/dev/null || { echo "sandbox failed to start:"; cat "$AIRFLOW_HOME/sandbox.log"; return 1; }
    sleep 0.2
  done
  echo "sandbox did not write $portfile in time"; return 1
}
