#!/bin/sh
# Sourced by readiness.sh and prestop.sh (never run alone): their redis-cli calls log in as
# $REDIS_USERNAME with the first password of $REDIS_PASSWORD_FILE that the local node accepts.
# The file (the mounted Secret's key) holds one password per line: during a rotation the old and the new
# one, both accepted by the nodes. Each line is tried once, in order, with the caller's `cli` (redis-cli on
# the local node, bounded by the caller's budget), so the login is bounded by the number of lines and by
# that budget. The password found stays in the exported REDISCLI_AUTH (redis-cli reads it from there: never
# in argv, never printed), and $auth_user makes the caller's redis-cli calls add --user "$auth_user"
# (also to another node: the preStop hook's CLUSTER FAILOVER, same users everywhere).
# Without a readable file (auth.enabled false) nothing changes: no login, no --user.
# The caller defines cli() and calls auth_ping, which leaves the first line of the node's answer to PING
# in $auth_reply: PONG or LOADING once a password is accepted, the last refusal (AUTH failed: WRONGPASS...,
# NOAUTH...) when none is, empty when the node did not answer.
auth_user=""
auth_reply=""
auth_ping() {
  if [ -z "${REDIS_PASSWORD_FILE:-}" ] || [ ! -r "$REDIS_PASSWORD_FILE" ]; then
    auth_reply=$(cli ping | head -n 1)
    return 0
  fi
  auth_user=${REDIS_USERNAME:-admin}
  auth_cr=$(printf '\r')
  auth_reply=""
  # fd 3: redis-cli must never read the passwords from its standard input.
  while read -r auth_line <&3 || [ -n "$auth_line" ]; do
    auth_line=${auth_line%"$auth_cr"}
    [ -n "$auth_line" ] || continue
    REDISCLI_AUTH=$auth_line
    export REDISCLI_AUTH
    auth_reply=$(cli ping 3<&- | head -n 1)
    case $auth_reply in
      *WRONGPASS* | NOAUTH*) ;; # this password is refused: the next line
      *) break ;;               # accepted (PONG, LOADING...), or no answer: trying more would not help
    esac
  done 3<"$REDIS_PASSWORD_FILE"
  auth_line=""
  return 0
}
