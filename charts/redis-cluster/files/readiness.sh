#!/bin/sh
# Readiness of a Redis pod: it answers PING and either is not in a cluster yet (the hook has not formed
# it: readiness must not wait for the hook) or sees cluster_state:ok.
# Env: REDIS_HOST (127.0.0.1), REDIS_PORT (6379), REDISCLI_AUTH (password).
set -u
cli() { redis-cli --no-auth-warning -h "${REDIS_HOST:-127.0.0.1}" -p "${REDIS_PORT:-6379}" "$@" | tr -d '\r'; }

[ "$(cli ping)" = "PONG" ] || { echo "no PONG"; exit 1; }
info=$(cli cluster info)
known=$(echo "$info" | sed -n 's/^cluster_known_nodes://p')
state=$(echo "$info" | sed -n 's/^cluster_state://p')
[ "$known" = "1" ] && exit 0
[ "$state" = "ok" ] && exit 0
echo "cluster_state:${state:-unknown} with ${known:-?} known nodes"
exit 1
