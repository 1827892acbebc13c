#!/bin/sh
# preStop of a Redis pod: a master hands its slots to its most up-to-date online replica (CLUSTER
# FAILOVER without FORCE: the replica first catches up, so no acknowledged write is lost) and waits until
# it has become a replica. A replica still in its sync is waited for (stopping now would leave the shard
# to a node-timeout failover that such a replica may not even be allowed to run). A replica, a master
# without slots or without any replica just stops. Clients see a ~10 ms pause instead of a node-timeout
# of errors. Everything is bounded by PRESTOP_TIMEOUT_SECONDS of wall-clock time, every redis-cli call
# included. Exits 0 whatever happens (a preStop failure must not change what Kubernetes does); each step
# prints one line, the last one says what happened.
# With auth, every call (the other node's CLUSTER FAILOVER too) logs in as REDIS_USERNAME with the first
# password of REDIS_PASSWORD_FILE this node accepts (auth.sh).
# Env: REDIS_HOST (127.0.0.1), REDIS_PORT (6379), PRESTOP_TIMEOUT_SECONDS (25), REDIS_USERNAME (admin),
# REDIS_PASSWORD_FILE (unset: no login), REDIS_TLS_DIR (unset: plain TCP; set: every call over TLS, tls.sh).
set -u
host=${REDIS_HOST:-127.0.0.1}
port=${REDIS_PORT:-6379}
budget=${PRESTOP_TIMEOUT_SECONDS:-25}
case $budget in '' | *[!0-9]*) budget=25 ;; esac

say() { echo "prestop: $*"; }
# Centiseconds since boot in $now: a monotonic wall clock with sub-second steps, no fork.
tick() {
  if read -r up _ </proc/uptime 2>/dev/null; then
    now=$((${up%.*} * 100 + 1${up#*.} - 100))
  else
    now=$(($(date +%s) * 100))
  fi
}
secs() { echo "$(($1 / 100)).$(($1 % 100 / 10))$(($1 % 10))"; }
tick
started=$now
deadline=$((now + budget * 100))
since() { tick && secs $((now - $1)); }
# redis-cli for at most $1 centiseconds and never past the deadline (redis-cli 7.0 has no -t option);
# prints nothing when the call times out or less than 0.1 s is left, errors as the reply.
rcli() {
  cap=$1
  shift
  tick
  [ $((deadline - now)) -lt "$cap" ] && cap=$((deadline - now))
  [ "$cap" -ge 10 ] || return 0
  [ -z "$auth_user" ] || set -- --user "$auth_user" "$@"
  tls_cli "$(secs "$cap")" --no-auth-warning "$@" 2>&1 | tr -d '\r'
}
cli() { rcli 200 -h "$host" -p "$port" "$@"; }
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
. "$here/tls.sh"
. "$here/auth.sh"
# HOST:PORT, an IPv6 address in brackets.
addr() { case $1 in *:*) echo "[$1]:$2" ;; *) echo "$1:$2" ;; esac; }

auth_ping
role=$(cli role | head -n 1)
case $role in
  master) ;;
  '') say "no answer from $(addr "$host" "$port"): nothing to hand over" && exit 0 ;;
  *) say "role is $role: nothing to hand over" && exit 0 ;;
esac
myslots=$(cli cluster nodes | awk '$3 ~ /(^|,)myself(,|$)/ { n = 0; for (i = 9; i <= NF; i++) if ($i !~ /^\[/) n++; print n }')
case $myslots in
  '') say "no answer to CLUSTER NODES: stopping without a handover" && exit 0 ;;
  0) say "this master serves no slots: nothing to hand over" && exit 0 ;;
esac

# INFO replication lists replicas as slaveN:ip=..,port=..,state=..,offset=..,lag=..; the ip may be IPv6
# (fd00::5), so fields split on "," and key from value on the first "=" only. Prints "offset state ip
# port", the highest offset first.
replicas() {
  printf '%s\n' "$1" | awk '
    /^slave[0-9]+:/ {
      sub(/^slave[0-9]+:/, "")
      ip = ""; p = ""; st = ""; off = 0
      n = split($0, kv, ",")
      for (i = 1; i <= n; i++) {
        eq = index(kv[i], "=")
        if (!eq) continue
        k = substr(kv[i], 1, eq - 1); v = substr(kv[i], eq + 1)
        if (k == "ip") ip = v; else if (k == "port") p = v; else if (k == "state") st = v
        else if (k == "offset") off = v + 0
      }
      if (ip != "" && p != "") print off, st, ip, p
    }' | sort -k1,1nr
}

# The engine of node $1:$2 ("redis 7.0.15", "valkey 9.1.2") from INFO server: a Valkey's own version is
# valkey_version (its redis_version is a fixed 7.2.4). Empty when it does not answer.
engine_of() {
  rcli 100 -h "$1" -p "$2" info server | awk -F: '
    $1 == "valkey_version" { valkey = "valkey " $2 }
    $1 == "redis_version" { redis = "redis " $2 }
    END { print (valkey != "" ? valkey : redis) }'
}

# "IP PORT OFFSET" lines, most up-to-date first, reordered so that the replicas running this master's
# engine come first (stable: by offset within each group). In a move between engines (a rolling upgrade
# of the image) the shard keeps an old-engine master while it has an old-engine replica: a newer engine's
# master can feed no older-engine replica (the older one cannot load its RDB: helm_redis.engine_move).
# Only asked when there is a choice, so a single replica costs no extra call.
same_engine_first() {
  if [ "$(printf '%s\n' "$1" | wc -l)" -lt 2 ]; then
    printf '%s\n' "$1"
    return 0
  fi
  mine=$(engine_of "$host" "$port")
  printf '%s\n' "$1" | while read -r r_ip r_port r_offset; do
    if [ -n "$mine" ] && [ "$(engine_of "$r_ip" "$r_port")" = "$mine" ]; then
      echo "0 $r_ip $r_port $r_offset"
    else
      echo "1 $r_ip $r_port $r_offset"
    fi
  done | sort -s -k1,1n | cut -d' ' -f2-
}

# Ask replica $1 (HOST:PORT) to take over; on OK wait (bounded) until this node is demoted and exit.
take_over() {
  tick
  asked=$now
  say "asking replica $(addr "$1" "$2") (offset $3) to take over"
  reply=$(rcli 300 -h "$1" -p "$2" cluster failover | head -n 1)
  case $reply in
    OK) ;;
    '') say "replica $(addr "$1" "$2") gave no answer to CLUSTER FAILOVER in time" && return 0 ;;
    *) say "replica $(addr "$1" "$2") refused CLUSTER FAILOVER: $reply" && return 0 ;;
  esac
  polls=0
  while [ "$polls" -lt 100000 ]; do # the budget ends this loop; the count is only a backstop
    polls=$((polls + 1))
    set -- $(cli role | head -n 3)
    if [ "${1:-}" = "slave" ] && [ $# -ge 3 ]; then
      say "handed over to $(addr "$2" "$3") in $(since "$asked") s"
      exit 0
    fi
    tick
    [ "$now" -lt "$deadline" ] || break
    sleep 0.05
  done
  say "not demoted within $budget s after CLUSTER FAILOVER: stopping anyway"
  exit 0
}

syncing=""
unanswered=""
rounds=0
while [ "$rounds" -lt 100000 ]; do # the budget ends this loop; the count is only a backstop
  rounds=$((rounds + 1))
  tick
  [ $((deadline - now)) -ge 10 ] || break
  info=$(cli info replication)
  case $info in
    *role:master*)
      unanswered=""
      list=$(replicas "$info")
      if [ -z "$list" ]; then
        say "no replica to hand over to: stopping without a handover"
        exit 0
      fi
      online=$(printf '%s\n' "$list" | awk '$2 == "online" { print $3, $4, $1 }')
      if [ -n "$online" ]; then
        [ -n "$syncing" ] && say "a replica is online after $(since "$started") s"
        set -- $(same_engine_first "$online")
        while [ $# -ge 3 ]; do
          take_over "$1" "$2" "$3"
          shift 3
        done
        say "no online replica took over: stopping without a handover"
        exit 0
      fi
      if [ -z "$syncing" ]; then
        syncing=$(printf '%s\n' "$list" | awk '{
          printf "%s%s (%s)", sep, ($3 ~ /:/ ? "[" $3 "]" : $3) ":" $4, $2; sep = ", " }')
        say "waiting for a replica to finish its sync: $syncing"
      fi
      ;;
    *role:*)
      say "this node is no longer a master: nothing to hand over"
      exit 0
      ;;
    *)
      [ -n "$unanswered" ] || say "no answer to INFO replication: retrying"
      unanswered=yes
      ;;
  esac
  sleep 0.1
done
if [ -n "$syncing" ]; then
  say "no replica came online within $budget s: stopping without a handover"
else
  say "no answer from $(addr "$host" "$port") within $budget s: stopping without a handover"
fi
exit 0
