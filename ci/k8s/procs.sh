# Process bookkeeping of the local cluster (sourced): every process up.sh starts is recorded by pid in
# $K8S_PIDS/NAME.pid together with its executable, and down.sh stops exactly those pids.
# shellcheck shell=bash

# running PID: the process exists and is not a zombie waiting for its (re)parent to reap it.
running() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# alive NAME: the recorded pid still runs the recorded executable.
alive() {
  local f="$K8S_PIDS/$1.pid" pid exe
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
    if [[ "$a" == "$K8S_DIR"/* && -f "$a" ]]; then cat "$a"; fi
  done | sha256sum | cut -c1-16
}

# start_proc NAME EXECUTABLE ARGS...: start once, in its own session, logging to $K8S_LOGS/NAME.log.
# A running process started with other arguments or configuration is restarted.
start_proc() {
  local name=$1 exe=$2 spec old=""
  shift 2
  spec=$(spec_hash "$exe" "$@")
  if alive "$name"; then
    read -r _ _ old <"$K8S_PIDS/$name.pid" || true
    [[ "$old" == "$spec" ]] && return 0
    log "$name runs with other arguments or configuration: restarting it"
    stop_proc "$name" 30
  fi
  mkdir -p "$K8S_PIDS" "$K8S_LOGS"
  setsid "$exe" "$@" >>"$K8S_LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid $(readlink -f "$exe") $spec" >"$K8S_PIDS/$name.pid"
  STARTED=$((STARTED + 1))
  log "started $name (pid $pid, log $K8S_LOGS/$name.log)"
  sleep 0.2
  alive "$name" || { tail -20 "$K8S_LOGS/$name.log" >&2; die "$name exited at once"; }
}

# stop_proc NAME [SECONDS]: SIGTERM the recorded pid, SIGKILL after a grace period.
stop_proc() {
  local name=$1 grace=${2:-15} f="$K8S_PIDS/$1.pid" pid exe i
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
      die "timed out after ${limit}s waiting for: $what (logs: $K8S_LOGS)"
    fi
    sleep 0.5
  done
}
