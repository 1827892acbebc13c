#!/usr/bin/env bash
# Smoke check of the cluster with the locally built images: a pod runs redis-server behind a headless
# Service; a second pod reaches it by its pod FQDN (redis-0.redis-h.NS.svc.cluster.local), by the
# headless Service name, and through a ClusterIP Service (kube-proxy). Exit 0 when it all works.
set -uo pipefail
LOG_TAG=smoke
source "$(dirname "$0")/lib.sh"
NS=rch-smoke
FQDN="redis-0.redis-h.$NS.svc.$CLUSTER_DOMAIN"
t0=$(date +%s.%N)

kc create namespace "$NS" --dry-run=client -o yaml | kc apply -f - >/dev/null
kc -n "$NS" delete pod client --ignore-not-found --wait=true >/dev/null 2>&1
kc -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: redis-h}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: rch-smoke-redis}
  ports: [{name: redis, port: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: redis}
spec:
  selector: {app: rch-smoke-redis}
  ports: [{name: redis, port: 6379}]
---
apiVersion: v1
kind: Pod
metadata:
  name: redis-0
  labels: {app: rch-smoke-redis}
spec:
  hostname: redis-0
  subdomain: redis-h
  terminationGracePeriodSeconds: 1
  containers:
  - name: redis
    image: $REDIS_IMAGE
    imagePullPolicy: Never
    command: [redis-server, --protected-mode, "no", --save, "", --appendonly, "no"]
    ports: [{containerPort: 6379}]
    readinessProbe:
      exec: {command: [redis-cli, ping]}
      periodSeconds: 1
EOF
if ! kc -n "$NS" wait --for=condition=Ready pod/redis-0 --timeout=90s >/dev/null; then
  kc -n "$NS" describe pod redis-0 | tail -20
  log "FAILED: redis-0 not Ready"
  exit 1
fi
kc -n "$NS" run client --image "$REDIS_IMAGE" --image-pull-policy Never --restart Never --command -- bash -c "
  set -e
  for i in \$(seq 50); do getent hosts $FQDN >/dev/null && break; sleep 0.2; done
  echo \"fqdn \$(getent hosts $FQDN)\"
  echo \"ping-fqdn \$(redis-cli -h $FQDN ping)\"
  echo \"set \$(redis-cli -h redis-h.$NS.svc.$CLUSTER_DOMAIN set smoke ok)\"
  # a new Service's ClusterIP works once kube-proxy has synced its rules (about a second)
  for i in \$(seq 50); do v=\$(redis-cli -h redis.$NS.svc.$CLUSTER_DOMAIN get smoke 2>/dev/null) && [ \"\$v\" = ok ] && break; sleep 0.2; done
  echo \"get-clusterip \$v (try \$i)\"
" >/dev/null
if kc -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/client --timeout=90s >/dev/null; then
  kc -n "$NS" logs client | sed 's/^/  /'
  if kc -n "$NS" logs client | grep -c '^get-clusterip ok ' >/dev/null; then
    log "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "smoke: passed in %.1f s", b-a}')"
    [[ ${KEEP:-0} == 1 ]] || kc delete namespace "$NS" --wait=false >/dev/null
    exit 0
  fi
fi
kc -n "$NS" logs client 2>&1 | tail -10
log "smoke: FAILED (namespace $NS kept for inspection)"
exit 1
