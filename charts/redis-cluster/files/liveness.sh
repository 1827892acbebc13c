#!/bin/sh
# Liveness of a Redis pod: "the process answers". Exit 0 when it does; otherwise exit 1 with one line on
# stdout saying why. Alive: PONG; an authentication error (NOAUTH, WRONGPASS: the `default` user is off and
# this probe never logs in, so it reads no password); LOADING (a node loading its dataset answers, and a
# restart would only start the load again). Dead: no answer (refused, timed out) or any other reply.
# One redis-cli call, ended half a second before the probe's own timeout (LIVENESS_TIMEOUT_SECONDS).
# Over TLS when REDIS_TLS_DIR is set (tls.sh).
# Env: REDIS_HOST (127.0.0.1), REDIS_PORT (6379), LIVENESS_TIMEOUT_SECONDS (10), REDIS_TLS_DIR (unset: plain TCP).
set -u
unset REDISCLI_AUTH
host=${REDIS_HOST:-127.0.0.1}
port=${REDIS_PORT:-6379}
limit=${LIVENESS_TIMEOUT_SECONDS:-10}
case $limit in '' | *[!0-9]*) limit=10 ;; esac
cap=$((limit * 100 - 50)) # centiseconds
[ "$cap" -ge 50 ] || cap=50
secs="$((cap / 100)).$((cap % 100 / 10))$((cap % 10))"

case $0 in */*) . "${0%/*}/tls.sh" ;; *) . ./tls.sh ;; esac

reply=$(tls_cli "$secs" -h "$host" -p "$port" ping 2>&1 | tr -d '\r' | head -n 1)
case $reply in
  PONG | NOAUTH* | WRONGPASS* | *'AUTH failed: WRONGPASS'* | LOADING*) exit 0 ;;
  '') echo "no answer from $host:$port within $secs s" ;;
  *) echo "no PONG from $host:$port: $reply" ;;
esac
exit 1
