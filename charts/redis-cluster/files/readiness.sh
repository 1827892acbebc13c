#!/bin/sh
# Readiness of a Redis pod: "this node does its job". Exit 0 when ready; otherwise exit 1 with one line
# on stdout saying why. Never waits for the formation hook (it runs only after the pods are Ready):
# - no PONG (down, loading, wrong password), or INFO loading:1: not ready;
# - not in a cluster yet (cluster_known_nodes:1): ready;
# - a replica: ready when its link is up and no sync or load is in progress (a replica in a full resync
#   must hold a rolling update back: the next pod may be its master, which could then not hand over);
# - a master serving slots: ready when cluster_state is ok, or fail only because another slot-owning
#   master is flagged fail (a whole other shard is down: this node still serves its slots and CLUSTER
#   SLOTS, and keeps the client Service's endpoints); not ready when peers are merely pfail (cut off);
# - a master without slots in a cluster: ready (an empty node waiting for the hook).
# Every redis-cli call is bounded (redis-cli 7.0 has no -t option): 4 s in all, under the probe's timeout.
# With auth, the calls log in as REDIS_USERNAME with the first password of REDIS_PASSWORD_FILE the node
# accepts (auth.sh).
# With TLS (REDIS_TLS_DIR set), every call is over TLS (tls.sh) and the probe also reloads a renewed
# certificate (tls_reload below).
# Env: REDIS_HOST (127.0.0.1), REDIS_PORT (6379), REDIS_USERNAME (admin), REDIS_PASSWORD_FILE (unset: no login),
# REDIS_TLS_DIR (unset: plain TCP), TMPDIR (/tmp: where the loaded certificate's checksum is kept).
set -u
host=${REDIS_HOST:-127.0.0.1}
port=${REDIS_PORT:-6379}

# Centiseconds since boot in $now: a monotonic wall clock with sub-second steps, no fork.
tick() {
  if read -r up _ </proc/uptime 2>/dev/null; then
    now=$((${up%.*} * 100 + 1${up#*.} - 100))
  else
    now=$(($(date +%s) * 100))
  fi
}
tick
deadline=$((now + 400))

# redis-cli on this node, at most 2 s and never past the deadline; errors become the reply's first line.
cli() {
  tick
  cap=$((deadline - now))
  [ "$cap" -gt 200 ] && cap=200
  [ "$cap" -ge 10 ] || return 0
  [ -z "$auth_user" ] || set -- --user "$auth_user" "$@"
  tls_cli "$((cap / 100)).$((cap % 100 / 10))$((cap % 10))" \
    --no-auth-warning -h "$host" -p "$port" "$@" 2>&1 | tr -d '\r'
}
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
. "$here/tls.sh"
. "$here/auth.sh"

# Certificate renewal without a restart. Redis 7 reads its certificate, key and CA at start, and again on
# a CONFIG SET of their file names (the same names reload them). The kubelet swaps a mounted Secret's files
# atomically when the Secret changes (a cert-manager renewal, or yours). This probe, which logs in as admin
# every periodSeconds anyway, compares the cksum of the three files with the one last loaded, kept in
# $TMPDIR/tls-loaded.sum (the pod's `tmp` emptyDir: absent after a start, so each start reloads once,
# harmlessly), and issues the CONFIG SET when they differ. The sum is stored only when Redis answers OK, so a
# refused or unanswered reload is tried again at the next probe; readiness never depends on it, and a reload
# prints nothing. No sidecar and no restart: a renewed certificate is served within the kubelet's sync of the
# Secret (its sync period, about a minute) plus one probe period.
tls_reload() {
  [ -n "${REDIS_TLS_DIR:-}" ] || return 0
  tls_sum_file=${TMPDIR:-/tmp}/tls-loaded.sum
  tls_sum=$(cksum "$REDIS_TLS_DIR/tls.crt" "$REDIS_TLS_DIR/tls.key" "$REDIS_TLS_DIR/ca.crt" 2>/dev/null) || return 0
  [ "$tls_sum" != "$(cat "$tls_sum_file" 2>/dev/null)" ] || return 0
  tls_reply=$(cli config set tls-cert-file "$REDIS_TLS_DIR/tls.crt" tls-key-file "$REDIS_TLS_DIR/tls.key" \
    tls-ca-cert-file "$REDIS_TLS_DIR/ca.crt" | head -n 1)
  [ "$tls_reply" = OK ] || return 0
  { printf '%s\n' "$tls_sum" >"$tls_sum_file.new" && mv -f "$tls_sum_file.new" "$tls_sum_file"; } 2>/dev/null
  return 0
}
field() { printf "%s\n" "$2" | sed -n "s/^$1://p"; }
not_ready() {
  echo "$*"
  exit 1
}

auth_ping
pong=$auth_reply
case $pong in
  PONG) ;;
  LOADING*) not_ready "loading the dataset" ;;
  '') not_ready "no PONG: no answer from $host:$port within 2 s" ;;
  *) not_ready "no PONG: $pong" ;;
esac
tls_reload

info=$(cli info persistence replication)
role=$(field role "$info")
[ -n "$role" ] || not_ready "no answer to INFO"
[ "$(field loading "$info")" = "0" ] || not_ready "loading the dataset"

cluster=$(cli cluster info)
known=$(field cluster_known_nodes "$cluster")
state=$(field cluster_state "$cluster")
[ -n "$known" ] || not_ready "no answer to CLUSTER INFO"
[ "$known" = "1" ] && exit 0 # not in a cluster yet: the hook forms it once the pods are ready

if [ "$role" = "slave" ]; then
  link=$(field master_link_status "$info")
  syncing=$(field master_sync_in_progress "$info")
  [ "$link" = "up" ] || not_ready "replica: master_link_status:$link"
  [ "$syncing" = "0" ] || not_ready "replica: master_sync_in_progress:$syncing"
  exit 0
fi

# Whether CLUSTER NODES calls this node a replica, its slots, the slots assigned in its view, and slot
# owners flagged fail and pfail (fail?). Fields: id addr flags master ping pong epoch link slot...
# ([slot-<-id] = importing).
set -- $(cli cluster nodes | awk '
  NF >= 8 {
    n = 0
    for (i = 9; i <= NF; i++) {
      if ($i ~ /^\[/) continue
      dash = index($i, "-")
      n += dash ? substr($i, dash + 1) - substr($i, 1, dash - 1) + 1 : 1
    }
    assigned += n
    if ($3 ~ /(^|,)myself(,|$)/) { mine = n; seen = 1; replica = $3 ~ /(^|,)slave(,|$)/; next }
    if (n == 0) next
    if ($3 ~ /(^|,)fail\?(,|$)/) pfail++
    else if ($3 ~ /(^|,)fail(,|$)/) failed++
  }
  END { if (seen) print replica + 0, mine + 0, assigned + 0, failed + 0, pfail + 0 }')
[ $# -eq 5 ] || not_ready "no answer to CLUSTER NODES"
replica=$1 mine=$2 assigned=$3 failed=$4 pfail=$5

# A replica restarted from its nodes.conf says role:master in INFO until the cluster cron (100 ms) points
# it at its master; CLUSTER NODES already says slave: it is a replica that has not even connected yet.
[ "$replica" -eq 0 ] || not_ready "replica: not connected to its master yet"

[ "$mine" -eq 0 ] && exit 0 # an empty master in a cluster: the hook gives it slots
[ "$state" = "ok" ] && exit 0
# Down only because another whole shard is: every slot assigned, no owner merely unreachable (fail?).
[ "$failed" -gt 0 ] && [ "$pfail" -eq 0 ] && [ "$assigned" -eq 16384 ] && exit 0
not_ready "master: cluster_state:${state:-unknown} ($failed slot owner(s) fail, $pfail pfail," \
  "$assigned of 16384 slots assigned, $known known nodes)"
