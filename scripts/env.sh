# Shared environment for `make run` / `make demo`: a project-local Airflow home, the venv first on PATH
# (airflow standalone starts its children as `airflow` from PATH), the project's DAGs and plugins, and
# generated Fernet keys (kept in $AIRFLOW_HOME/secrets.env, git-ignored, created once).
#
# Everything lives under the git-ignored .airflow/ folder: an AIRFLOW_HOME (or a database URL) exported in
# your shell is deliberately NOT used, so `make run` never touches another Airflow installation.
# The calling script may set ML_CONNECTOR_AIRFLOW_HOME (demo.sh uses .airflow/demo).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AIRFLOW_HOME="${ML_CONNECTOR_AIRFLOW_HOME:-$ROOT/.airflow}"
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
# The Test button of Admin > Connections (POST /api/v2/connections/test) is disabled by default in Airflow 3.
export AIRFLOW__CORE__TEST_CONNECTION=Enabled
mkdir -p "$AIRFLOW_HOME" "$ROOT/plugins"
# private: the home holds the Fernet keys, the admin password file and the metadata DB with connections
chmod 700 "$ROOT/.airflow" "$AIRFLOW_HOME" 2>/dev/null || true
if [ ! -f "$AIRFLOW_HOME/secrets.env" ]; then
  (
    umask 077
    {
      echo "export ML_CONNECTOR_FERNET_KEYS=$(python -m ml_connector.cli generate-key)"
      echo "export AIRFLOW__CORE__FERNET_KEY=$(python -m ml_connector.cli generate-key)"
    } > "$AIRFLOW_HOME/secrets.env.tmp"
    mv "$AIRFLOW_HOME/secrets.env.tmp" "$AIRFLOW_HOME/secrets.env"
  )
fi
# shellcheck disable=SC1091
. "$AIRFLOW_HOME/secrets.env"

# pin_airflow_cfg: Airflow writes $AIRFLOW_HOME/airflow.cfg from its defaults on first use (load_examples = True,
# dags_folder = $AIRFLOW_HOME/dags, ...), ignoring the environment above. Pin the project's values into the
# file too, so that an `airflow` command run in this home without this script behaves the same.
pin_airflow_cfg() {
  [ -f "$AIRFLOW_HOME/airflow.cfg" ] || airflow config get-value core executor >/dev/null 2>&1 || true
  python - "$AIRFLOW_HOME/airflow.cfg" <<'PY'
import os, re, sys
path = sys.argv[1]
pinned = {"core": {"dags_folder": os.environ["AIRFLOW__CORE__DAGS_FOLDER"],
                   "plugins_folder": os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"],
                   "load_examples": "False", "executor": "LocalExecutor",
                   "test_connection": os.environ["AIRFLOW__CORE__TEST_CONNECTION"]}}
lines, section = open(path).read().splitlines(keepends=True), None
for i, line in enumerate(lines):
    if m := re.match(r"\[([^\]]+)\]", line):
        section = m.group(1)
    elif (m := re.match(r"(\w+)\s*=", line)) and m.group(1) in pinned.get(section, {}):
        lines[i] = f"{m.group(1)} = {pinned[section][m.group(1)]}\n"
open(path, "w").write("".join(lines))
PY
}

# require_free_port PORT WHAT OVERRIDE: exit with a message naming the port and the variable that moves it.
require_free_port() {
  if ! python - "$1" <<'PY'
import socket, sys
probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine, listeners are not
try:
    probe.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    probe.close()
PY
  then
    echo "error: port $1 ($2) is already in use." >&2
    echo "       Stop whatever listens there, or choose another port: $3=<port> make run" >&2
    exit 1
  fi
}

# start_sandbox PORTFILE [extra args]: starts the sandbox in the background, sets SANDBOX_PID, waits for it.
start_sandbox() {
  local portfile="$1"; shift
  rm -f "$portfile"
  python -m ml_connector_sandbox --host 127.0.0.1 --port-file "$portfile" "$@" > "$AIRFLOW_HOME/sandbox.log" 2>&1 &
  SANDBOX_PID=$!
  for _ in $(seq 1 100); do
    [ -s "$portfile" ] && return 0
    kill -0 "$SANDBOX_PID" 2>/dev/null || { echo "sandbox failed to start:"; cat "$AIRFLOW_HOME/sandbox.log"; return 1; }
    sleep 0.2
  done
  echo "sandbox did not write $portfile in time"; return 1
}

# stop_pid PID: SIGTERM one process we started and reap it (the sandbox stops gracefully on SIGTERM).
stop_pid() {
  [ -n "${1:-}" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# start_group CMD...: run CMD in the background as the leader of a new process group (sets GROUP_PID), so
# that it and every child it starts can be stopped together with stop_group, and Ctrl-C in the terminal
# reaches it only through our trap.
# A non-interactive bash starts background commands with SIGINT ignored, and Python then never raises
# KeyboardInterrupt: restore the default handler before exec, or stop_group's SIGINT would do nothing.
start_group() {
  python -c 'import os, signal, sys; os.setpgid(0, 0); signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' "$@" &
  GROUP_PID=$!
}

# stop_group PGID [GRACE_SECONDS]: SIGINT the leader (airflow standalone shuts its components down on
# Ctrl-C only; SIGTERM would kill it and orphan the scheduler, api-server, dag-processor and triggerer),
# then SIGTERM and finally SIGKILL whatever is left in the group.
stop_group() {
  local pgid="${1:-}" grace="${2:-30}" _
  [ -n "$pgid" ] || return 0
  kill -INT "$pgid" 2>/dev/null || true
  for _ in $(seq 1 $((grace * 2))); do
    kill -0 "$pgid" 2>/dev/null || break
    [ "$(ps -o stat= -p "$pgid" 2>/dev/null | cut -c1)" = Z ] && break
    sleep 0.5
  done
  kill -TERM -- "-$pgid" 2>/dev/null || true
  wait "$pgid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    kill -0 -- "-$pgid" 2>/dev/null || return 0
    sleep 0.5
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
}
