# Process bookkeeping (sourced) of the local cluster and of Argo CD: every process a script starts is
# recorded by pid in $PROCS_PIDS/NAME.pid together with its executable, and the down scripts stop exactly
# those pids. PROCS_PIDS / PROCS_LOGS default to the cluster's $K8S_PIDS / $K8S_LOGS.
# shellcheck shell=bash
PROCS_PIDS=${PROCS_PIDS:-$K8S_PIDS}
PROCS_LOGS=${PROCS_LOGS:-$K8S_LOGS}

# running PID: the process exists and is not a zombie waiting for its (re)parent to reap it.
running() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# alive NAME: the recorded pid still runs the recorded executable.
alive() {
  local f="$PROCS_PIDS/$1.pid" pid exe
  [[ -f "$f" ]] || return 1
  read -r pid exe _ <"$f" || return 1
  [[ -n "$pid" ]] && running "$pid" || return 1
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe"* ]]
}

# spec_hash EXECUTABLE ARGS...: what a process was started with: its arguments and the content of the
# configuration files they name (so a changed flag or config restarts it on the next `up`).
spec_hash() {
  local a
  for a in "$@"; do
    echo "$a"
    if [[ -n "${K8S_DIR:-}" && "$a" == "$K8S_DIR"/* && -f "$a" ]]; then cat "$a"; fi
  done | sha256sum | cut -c1-16
}

# start_proc NAME EXECUTABLE ARGS...: start_spec with the spec taken from the arguments and the
# configuration files they name.
start_proc() {
  local name=$1
  shift
  start_spec "$name" "$(spec_hash "$@")" "$@"
}

# start_spec NAME SPEC EXECUTABLE ARGS...: start once, in its own session, logging to $PROCS_LOGS/NAME.log.
# SPEC sums up what it runs with; a running process started with another SPEC is restarted.
start_spec() {
  local name=$1 spec=$2 exe=$3 old=""
  shift 3
  if alive "$name"; then
    read -r _ _ old <"$PROCS_PIDS/$name.pid" || true
    [[ "$old" == "$spec" ]] && return 0
    log "$name runs with other arguments or configuration: restarting it"
    stop_proc "$name" 30
  fi
  mkdir -p "$PROCS_PIDS" "$PROCS_LOGS"
  setsid "$exe" "$@" >>"$PROCS_LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid $(readlink -f "$exe") $spec" >"$PROCS_PIDS/$name.pid"
  STARTED=$((STARTED + 1))
  log "started $name (pid $pid, log $PROCS_LOGS/$name.log)"
  sleep 0.3
  alive "$name" || { tail -20 "$PROCS_LOGS/$name.log" >&2; die "$name exited at once"; }
}

# stop_proc NAME [SECONDS]: SIGTERM the recorded pid, SIGKILL after a grace period.
stop_proc() {
  local name=$1 grace=${2:-15} f="$PROCS_PIDS/$1.pid" pid exe i
  [[ -f "$f" ]] || return 0
  read -r pid exe _ <"$f" || true
  if alive "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

# wait_for WHAT SECONDS COMMAND...: poll a command until it succeeds.
wait_for() {
  local what=$1 limit=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - t0 >= limit)); then
      die "timed out after ${limit}s waiting for: $what (logs: $PROCS_LOGS)"
    fi
    sleep 0.5
  done
}
