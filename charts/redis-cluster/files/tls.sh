#!/bin/sh
# Sourced by readiness.sh, liveness.sh and prestop.sh, and pasted into the helm test pod's script (never
# run alone): the one place that says how the CLI speaks to the nodes. The CLI is the engine's, REDIS_CLI
# (redis-cli or valkey-cli, which reads the password from the same variable).
# With tls.enabled the chart mounts the TLS Secret (tls.crt, tls.key, ca.crt) at REDIS_TLS_DIR: redis-cli
# then verifies the node's certificate against ca.crt and shows tls.crt as its client certificate
# (`tls-auth-clients yes` asks for one). Without REDIS_TLS_DIR it speaks plain TCP, as before.
# tls_cli SECONDS ARGS...: the CLI with ARGS, ended after SECONDS (redis-cli 7.0 has no -t option).
tls_cli() {
  tls_secs=$1
  shift
  [ -z "${REDIS_TLS_DIR:-}" ] || set -- --tls --cacert "$REDIS_TLS_DIR/ca.crt" \
    --cert "$REDIS_TLS_DIR/tls.crt" --key "$REDIS_TLS_DIR/tls.key" "$@"
  timeout "$tls_secs" "${REDIS_CLI:-redis-cli}" "$@"
}
