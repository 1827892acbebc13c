{{/*
Chart name, cut to 63 characters (the DNS label limit of Kubernetes names).
*/}}
{{- define "redis-cluster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of the release's resources: the release name, plus the chart name unless the release name
already contains it.
*/}}
{{- define "redis-cluster.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "redis-cluster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: never change for the life of a release (a StatefulSet's selector is immutable).
*/}}
{{- define "redis-cluster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis-cluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels of every object.
*/}}
{{- define "redis-cluster.labels" -}}
helm.sh/chart: {{ include "redis-cluster.chart" . }}
{{ include "redis-cluster.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: redis-cluster
{{- end -}}

{{/*
Labels that select the Redis pods (Services, PodDisruptionBudget, NetworkPolicy, the hook).
*/}}
{{- define "redis-cluster.redisSelectorLabels" -}}
{{ include "redis-cluster.selectorLabels" . }}
app.kubernetes.io/component: redis
{{- end -}}

{{/*
app.kubernetes.io/component of the helm-redis tools' pods (hook Jobs, reconciler), a YAML list: their
NetworkPolicy selects them by it.
*/}}
{{- define "redis-cluster.toolsComponents" -}}
- auth-secret
- cluster-scale-in
- cluster-init
- reconciler
- failover
{{- end -}}

{{/*
The same selector as a label query (`key=value,...`) for the hook.
*/}}
{{- define "redis-cluster.redisSelectorQuery" -}}
{{- $pairs := list -}}
{{- range $k, $v := include "redis-cluster.redisSelectorLabels" . | fromYaml -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
Number of Redis pods: masters × (1 + replicasPerMaster).
*/}}
{{- define "redis-cluster.replicas" -}}
{{- mul (int .Values.cluster.masters) (add 1 (int .Values.cluster.replicasPerMaster)) -}}
{{- end -}}

{{/*
Name of the headless Service; the full name is cut first so the suffix still fits.
*/}}
{{- define "redis-cluster.headlessServiceName" -}}
{{- printf "%s-headless" (include "redis-cluster.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{/*
Name of the ConfigMap holding the start-time scripts (files/*.sh).
*/}}
{{- define "redis-cluster.scriptsConfigMapName" -}}
{{- printf "%s-scripts" (include "redis-cluster.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/*
Name of the hook Job and of its ServiceAccount, Role and RoleBinding.
*/}}
{{- define "redis-cluster.hookName" -}}
{{- printf "%s-init" (include "redis-cluster.fullname" . | trunc 58 | trimSuffix "-") -}}
{{- end -}}

{{/*
Name of the pre-upgrade scale-in Job (it runs under the hook's ServiceAccount).
*/}}
{{- define "redis-cluster.scaleInJobName" -}}
{{- printf "%s-scale-in" (include "redis-cluster.hookName" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{/*
Name of the reconciler Deployment and of its ServiceAccount, Role and RoleBinding.
*/}}
{{- define "redis-cluster.reconcilerName" -}}
{{- printf "%s-reconciler" (include "redis-cluster.fullname" . | trunc 52 | trimSuffix "-") -}}
{{- end -}}

{{- define "redis-cluster.failoverControllerName" -}}
{{- printf "%s-failover" (include "redis-cluster.fullname" . | trunc 52 | trimSuffix "-") -}}
{{- end -}}

{{/*
ServiceAccount of the Redis pods.
*/}}
{{- define "redis-cluster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "redis-cluster.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Name of the pre-install/pre-upgrade Job that makes sure the Secret of the passwords exists.
*/}}
{{- define "redis-cluster.secretJobName" -}}
{{- printf "%s-secret" (include "redis-cluster.hookName" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/*
Secret of the passwords: auth.existingSecret, or the one the pre-install hook generates (never rendered: no
random value in a template, so every render is identical).
*/}}
{{- define "redis-cluster.secretName" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-auth" (include "redis-cluster.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Keys of that Secret, one per user, comma-separated: admin (the tools), replication (masteruser), then the
application users in values order. Each holds one password per line.
*/}}
{{/*
The application users, `<name> <ACL rules>` per line (the ConfigMap's acl-users, the Secret Job's env).
*/}}
{{- define "redis-cluster.aclUsers" -}}
{{- range .Values.auth.users }}
{{ .name }} {{ .rules }}
{{- end }}
{{- end -}}

{{- define "redis-cluster.secretKeys" -}}
{{- $keys := list "admin-password" "replication-password" -}}
{{- range .Values.auth.users -}}
{{- $keys = append $keys (printf "%s-password" .name) -}}
{{- end -}}
{{- join "," $keys -}}
{{- end -}}

{{/*
Where every pod of the release finds the Secret's files, and the file the tools log in with (user admin).
*/}}
{{- define "redis-cluster.authDir" -}}
/etc/redis-auth
{{- end -}}

{{- define "redis-cluster.adminPasswordFile" -}}
{{- printf "%s/admin-password" (include "redis-cluster.authDir" .) -}}
{{- end -}}

{{/*
The Secret as a volume: files <user>-password, readable by the pods' group (fsGroup) only.
Call with (dict "root" $ "optional" BOOL).
*/}}
{{- define "redis-cluster.authVolume" -}}
- name: auth
  secret:
    secretName: {{ include "redis-cluster.secretName" .root }}
    defaultMode: 0440
    {{- if .optional }}
    optional: true
    {{- end }}
{{- end -}}

{{/*
Environment of a client of the Redis nodes: who it logs in as and where the passwords are (never the
passwords themselves: they stay in files).
*/}}
{{- define "redis-cluster.authEnv" -}}
- name: REDIS_USERNAME
  value: admin
- name: REDIS_PASSWORD_FILE
  value: {{ include "redis-cluster.adminPasswordFile" . | quote }}
{{- end -}}

{{/*
TLS (tls.enabled). The Secret of tls.crt, tls.key and ca.crt: tls.existingSecret, else the one the chart's
cert-manager Certificate writes.
*/}}
{{- define "redis-cluster.tlsSecretName" -}}
{{- if .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "redis-cluster.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Where every pod of the release finds the TLS files (redis.conf names them there too).
*/}}
{{- define "redis-cluster.tlsDir" -}}
/etc/redis-tls
{{- end -}}

{{/*
The name every node's certificate must carry: the tools verify it, whichever node they reach (pod IPs and
pod hostnames differ per node; this one name is on every node's certificate).
*/}}
{{- define "redis-cluster.tlsServerName" -}}
{{- printf "%s.%s.svc.%s" (include "redis-cluster.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/*
The TLS Secret as a volume, readable by the pods' group (fsGroup) only. Mounted whole, never with subPath:
a subPath mount never sees the kubelet's update of a renewed Secret. Call with (dict "root" $ "optional"
BOOL): optional for the pre-install/pre-upgrade Jobs, which may run before the Certificate exists.
*/}}
{{- define "redis-cluster.tlsVolume" -}}
- name: tls
  secret:
    secretName: {{ include "redis-cluster.tlsSecretName" .root }}
    defaultMode: 0440
    {{- if .optional }}
    optional: true
    {{- end }}
{{- end -}}

{{- define "redis-cluster.tlsMount" -}}
- name: tls
  mountPath: {{ include "redis-cluster.tlsDir" . }}
  readOnly: true
{{- end -}}

{{/*
Environment of a client of the Redis nodes with tls.enabled: the TLS files (ca.crt to verify the nodes,
tls.crt and tls.key as client certificate) and the name to verify.
*/}}
{{- define "redis-cluster.tlsEnv" -}}
- name: REDIS_TLS_DIR
  value: {{ include "redis-cluster.tlsDir" . | quote }}
- name: REDIS_TLS_SERVER_NAME
  value: {{ include "redis-cluster.tlsServerName" . | quote }}
{{- end -}}

{{/*
Storage class shared by the static PVs and the volumeClaimTemplate, unique per release and namespace
(PVs are cluster-scoped), so no other claim can bind these PVs.
*/}}
{{- define "redis-cluster.staticStorageClassName" -}}
{{- printf "%s-%s-static" .Release.Namespace (include "redis-cluster.fullname" .) -}}
{{- end -}}

{{/*
Storage class of the claims, or nothing when the cluster's default class applies.
*/}}
{{- define "redis-cluster.claimStorageClassName" -}}
{{- if has .Values.persistence.type (list "nfs" "hostPath") -}}
{{- include "redis-cluster.staticStorageClassName" . -}}
{{- else if eq .Values.persistence.type "storageClass" -}}
{{- .Values.persistence.storageClassName | default "" -}}
{{- end -}}
{{- end -}}

{{/*
Path of one pod's static PV: the pattern with {{ordinal}}, {{release}} and {{namespace}} replaced.
Call with (dict "pattern" $pattern "ordinal" $i "root" $).
*/}}
{{- define "redis-cluster.pvPath" -}}
{{- .pattern | replace "{{ordinal}}" (toString .ordinal) | replace "{{release}}" .root.Release.Name | replace "{{namespace}}" .root.Release.Namespace -}}
{{- end -}}

{{/*
The grace period is split in two: the preStop handover gets all of it but the last 5 s, which are left to
Redis's own shutdown after SIGTERM (AOF fsync, and at most `shutdown-timeout` seconds waiting for lagging
replicas when no handover happened). `save` is off by default, so no final RDB dump competes for them.
*/}}
{{- define "redis-cluster.shutdownHeadroom" -}}
5
{{- end -}}

{{- define "redis-cluster.shutdownTimeout" -}}
3
{{- end -}}

{{/*
Seconds the preStop hook may spend handing over a master's slots.
*/}}
{{- define "redis-cluster.prestopTimeout" -}}
{{- sub (int .Values.terminationGracePeriodSeconds) (include "redis-cluster.shutdownHeadroom" . | int) -}}
{{- end -}}

{{/*
Container securityContext shared by the Redis, prepare and hook containers.
*/}}
{{- define "redis-cluster.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end -}}

{{/*
Pod securityContext shared by the Redis, hook and test pods.
*/}}
{{- define "redis-cluster.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Tools image reference: its tag defaults to the chart's appVersion (the tools are released with the chart).
*/}}
{{- define "redis-cluster.toolsImage" -}}
{{- include "redis-cluster.imageRef" (dict "image" .Values.tools.image "tag" (.Values.tools.image.tag | default .Chart.AppVersion)) -}}
{{- end -}}

{{/*
Environment of the helm-redis tools (hook Jobs, reconciler): where the Redis pods are and the shape the
values ask for, and with auth.enabled who to log in as. Call with (dict "root" $ "auth" BOOL).
*/}}
{{- define "redis-cluster.toolsEnv" -}}
{{- $root := .root -}}
- name: REDIS_CLUSTER_STATEFULSET
  value: {{ include "redis-cluster.fullname" $root | quote }}
- name: REDIS_CLUSTER_SERVICE
  value: {{ include "redis-cluster.headlessServiceName" $root | quote }}
- name: REDIS_CLUSTER_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: REDIS_CLUSTER_DOMAIN
  value: {{ $root.Values.clusterDomain | quote }}
- name: REDIS_CLUSTER_PORT
  value: {{ $root.Values.redis.port | quote }}
- name: REDIS_CLUSTER_PODS
  value: {{ include "redis-cluster.replicas" $root | quote }}
- name: REDIS_CLUSTER_MASTERS
  value: {{ $root.Values.cluster.masters | quote }}
- name: REDIS_CLUSTER_REPLICAS_PER_MASTER
  value: {{ $root.Values.cluster.replicasPerMaster | quote }}
- name: REDIS_CLUSTER_POD_SELECTOR
  value: {{ include "redis-cluster.redisSelectorQuery" $root | quote }}
- name: REDIS_CLUSTER_WAIT_TIMEOUT
  value: {{ $root.Values.hook.waitTimeoutSeconds | quote }}
# A fresh formation shortens the nodes' cluster-node-timeout while it forms and puts this one back.
- name: REDIS_CLUSTER_NODE_TIMEOUT
  value: {{ $root.Values.cluster.nodeTimeout | quote }}
{{- with dig "limits" "memory" "" $root.Values.redis.resources }}
# A scale-in refuses when the data would not fit the remaining masters (maxmemory or this limit).
- name: REDIS_CLUSTER_MEMORY_LIMIT
  value: {{ . | quote }}
{{- end }}
{{- if .auth }}
{{ include "redis-cluster.authEnv" $root }}
{{- end }}
{{- if $root.Values.tls.enabled }}
{{ include "redis-cluster.tlsEnv" $root }}
{{- end }}
{{- end -}}

{{/*
Pod spec of the helm-redis tools: the hook Jobs and the reconciler differ only in what this takes.
Call with (dict "root" $ "name" CONTAINER "args" LIST "serviceAccountName" NAME "resources" MAP
"restartPolicy" POLICY-or-nothing "env" EXTRA-ENV-LIST-or-nothing "component" LABEL-VALUE
"noAuth" BOOL "optionalAuth" BOOL "optionalTls" BOOL "aclUsers" BOOL).
With auth.enabled the container logs in as admin with the Secret mounted at /etc/redis-auth, unless noAuth
(the ensure-secret Job: the Secret may not exist yet). optionalAuth: the pod starts even without the Secret
(the pre-upgrade Job: Argo CD runs PreSync on its first sync too). aclUsers: the container also gets the
application users (/etc/redis/acl-users) and the whole Secret's directory, to set every user on the nodes.
With tls.enabled every tool speaks TLS with the TLS Secret mounted at /etc/redis-tls (noAuth does not change
that: the Secret Job reaches the nodes too); optionalTls: the pod starts before that Secret exists (the
pre-install/pre-upgrade Jobs run before the chart's Certificate is created).
*/}}
{{- define "redis-cluster.toolsPodSpec" -}}
{{- $root := .root -}}
{{- $auth := and $root.Values.auth.enabled (not .noAuth) -}}
{{- $aclUsers := and $auth .aclUsers -}}
serviceAccountName: {{ .serviceAccountName }}
# The tools list the Redis pods (the Secret Job: reads or makes the Secret) through the API.
automountServiceAccountToken: true
enableServiceLinks: false
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
securityContext:
  {{- include "redis-cluster.podSecurityContext" $root | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .engineVersion }}
initContainers:
  # The engine this release is upgraded to says its version (`<server> --version`) for the tools, which
  # refuse a move to an engine that cannot load the running nodes' data before anything changes.
  - name: engine-version
    image: {{ include "redis-cluster.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command:
      - sh
      - -c
      - exec {{ include "redis-cluster.server" $root }} --version >{{ .engineVersion }}
    securityContext:
      {{- include "redis-cluster.containerSecurityContext" $root | nindent 6 }}
    {{- with .resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
{{- end }}
containers:
  - name: {{ .name }}
    image: {{ include "redis-cluster.toolsImage" $root }}
    # The last lines of a failed run (a refusal names why) show in the pod's status, as Argo CD shows it.
    terminationMessagePolicy: FallbackToLogsOnError
    imagePullPolicy: {{ $root.Values.tools.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    env:
      {{- include "redis-cluster.toolsEnv" (dict "root" $root "auth" $auth) | nindent 6 }}
      {{- if $aclUsers }}
      # Every user's passwords and the application users' rules: the hook sets them on every running node.
      - name: REDIS_CLUSTER_AUTH_DIR
        value: {{ include "redis-cluster.authDir" $root | quote }}
      - name: REDIS_CLUSTER_ACL_USERS
        value: /etc/redis/acl-users
      {{- end }}
      {{- with .engineVersion }}
      - name: REDIS_CLUSTER_TARGET_ENGINE_FILE
        value: {{ . }}
      {{- end }}
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with .readyFile }}
    # Ready while its pod watch works: a broken watch (the API unreachable, the permission gone) shows.
    readinessProbe:
      exec:
        command:
          - test
          - -f
          - {{ . }}
      periodSeconds: 2
      failureThreshold: 1
    {{- end }}
    securityContext:
      {{- include "redis-cluster.containerSecurityContext" $root | nindent 6 }}
    {{- with .resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if $auth }}
      - name: auth
        mountPath: {{ include "redis-cluster.authDir" $root }}
        readOnly: true
      {{- end }}
      {{- if $aclUsers }}
      - name: acl-users
        mountPath: /etc/redis
        readOnly: true
      {{- end }}
      {{- if $root.Values.tls.enabled }}
      {{- include "redis-cluster.tlsMount" $root | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if $auth }}
  {{- include "redis-cluster.authVolume" (dict "root" $root "optional" .optionalAuth) | nindent 2 }}
  {{- end }}
  {{- if $aclUsers }}
  - name: acl-users
    configMap:
      name: {{ include "redis-cluster.fullname" $root }}
      items:
        - key: acl-users
          path: acl-users
  {{- end }}
  {{- if $root.Values.tls.enabled }}
  {{- include "redis-cluster.tlsVolume" (dict "root" $root "optional" .optionalTls) | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
Egress rule to the cluster DNS (networkPolicy.dns), shared by the release's NetworkPolicies.
*/}}
{{- define "redis-cluster.dnsEgress" -}}
- ports:
    {{- toYaml .Values.networkPolicy.dns.ports | nindent 4 }}
  {{- with .Values.networkPolicy.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
Egress rule to the client and bus ports of this release's Redis pods.
Call with (dict "root" $ "bus" BOOL).
*/}}
{{- define "redis-cluster.redisEgress" -}}
- ports:
    - port: {{ .root.Values.redis.port }}
      protocol: TCP
    {{- if .bus }}
    - port: {{ add .root.Values.redis.port 10000 }}
      protocol: TCP
    {{- end }}
  to:
    - podSelector:
        matchLabels:
          {{- include "redis-cluster.redisSelectorLabels" .root | nindent 10 }}
{{- end -}}

{{/*
The engine's server and CLI (image.engine: redis-server/redis-cli or valkey-server/valkey-cli).
*/}}
{{- define "redis-cluster.server" -}}
{{- printf "%s-server" .Values.image.engine -}}
{{- end -}}
{{- define "redis-cluster.cli" -}}
{{- printf "%s-cli" .Values.image.engine -}}
{{- end -}}

{{/*
Env of containers of the server image whose scripts call its CLI (files/tls.sh: REDIS_CLI).
*/}}
{{- define "redis-cluster.engineEnv" -}}
- name: REDIS_CLI
  value: {{ include "redis-cluster.cli" . }}
{{- end -}}

{{/*
Redis image reference.
*/}}
{{- define "redis-cluster.image" -}}
{{- include "redis-cluster.imageRef" (dict "image" .Values.image "tag" .Values.image.tag) -}}
{{- end -}}

{{/*
An image reference from dict(image: {repository, digest}, tag): repository:tag, then @digest when one is
given (the digest decides what is pulled; the tag stays for people reading the pod spec).
*/}}
{{- define "redis-cluster.imageRef" -}}
{{- printf "%s:%s" .image.repository .tag -}}
{{- with .image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/*
Checks that values.schema.json cannot express; each failure names the keys to fix.
*/}}
{{- define "redis-cluster.validate" -}}
{{- /* The schema refuses these keys too; this says why when schema validation is skipped. */ -}}
{{- if or (hasKey .Values.auth "password") (hasKey .Values.auth "existingSecretPasswordKey") -}}
{{- fail "auth.password and auth.existingSecretPasswordKey are gone: passwords never go in values (they would land in the release, in Git, in the rendered manifests). Put them in a Secret and set auth.existingSecret (keys admin-password, replication-password and <user>-password, one password per line), or leave auth.existingSecret unset and let the pre-install hook generate one" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $user := .Values.auth.users -}}
{{- if has $user.name (list "admin" "replication" "default" "probe") -}}
{{- fail (printf "auth.users[%d].name is %q, a user the chart keeps for itself (admin: the tools, replication: the replicas, default: disabled, probe): give the application user another name" $i $user.name) -}}
{{- end -}}
{{- if hasKey $seen $user.name -}}
{{- fail (printf "auth.users[%d].name %q is already auth.users[%v].name: each user is listed once (its password is key %s-password of the Secret)" $i $user.name (get $seen $user.name) $user.name) -}}
{{- end -}}
{{- $_ := set $seen $user.name $i -}}
{{- range $word := splitList " " ($user.rules | replace "\t" " ") -}}
{{- if or (has $word (list "nopass" "resetpass" "reset")) (regexMatch "^[<>#!]" $word) -}}
{{- /* Never echo a password back: name only the rule's first character. */ -}}
{{- $what := ternary (printf "%q" $word) (printf "a rule starting with %q" (substr 0 1 $word)) (has $word (list "nopass" "resetpass" "reset")) -}}
{{- fail (printf "auth.users[%d].rules (user %q) has %s: rules never hold or change passwords (they come from key %s-password of the Secret, one per line): remove it" $i $user.name $what $user.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.auth.enabled -}}
{{- if and (not .Values.hook.enabled) (not .Values.auth.existingSecret) -}}
{{- fail (printf "auth.enabled is true and hook.enabled is false, so no hook creates the Secret %s: set auth.existingSecret to a Secret you made (keys %s, one password per line), or enable hook.enabled" (include "redis-cluster.secretName" .) (include "redis-cluster.secretKeys" .)) -}}
{{- end -}}
{{- else if has .Values.service.type (list "NodePort" "LoadBalancer") -}}
{{- fail (printf "service.type is %s but auth.enabled is false: Redis would be open, without a password, to anyone who reaches a node's port (FLUSHALL, CONFIG SET, SHUTDOWN): set auth.enabled true, or keep service.type ClusterIP" .Values.service.type) -}}
{{- end -}}
{{- if and (eq .Values.persistence.type "nfs") (not .Values.persistence.nfs.server) -}}
{{- fail "persistence.type is nfs but persistence.nfs.server is not set" -}}
{{- end -}}
{{- if and (hasKey .Values.service "nodePort") (eq .Values.service.type "ClusterIP") -}}
{{- fail "service.nodePort is set but service.type is ClusterIP: use NodePort or LoadBalancer, or unset service.nodePort" -}}
{{- end -}}
{{- if and .Values.hook.enabled (le (int .Values.hook.activeDeadlineSeconds) (int .Values.hook.waitTimeoutSeconds)) -}}
{{- fail (printf "hook.activeDeadlineSeconds (%v) must be greater than hook.waitTimeoutSeconds (%v)" .Values.hook.activeDeadlineSeconds .Values.hook.waitTimeoutSeconds) -}}
{{- end -}}
{{- $takeover := int .Values.redis.takeoverTimeoutSeconds -}}
{{- $detectAndElect := add (div (mul 2 (int .Values.cluster.nodeTimeout)) 1000) 1 -}}
{{- if and (gt $takeover 0) (lt $takeover $detectAndElect) -}}
{{- fail (printf "redis.takeoverTimeoutSeconds (%d) is shorter than a failover takes at cluster.nodeTimeout %v ms: set it to at least %d (2 × cluster.nodeTimeout + 1 s), or 0 to never wait" $takeover .Values.cluster.nodeTimeout $detectAndElect) -}}
{{- end -}}
{{- if has .Values.persistence.type (list "nfs" "hostPath") -}}
{{- range $when, $policy := .Values.persistence.retentionPolicy -}}
{{- if eq $policy "Delete" -}}
{{- fail (printf "persistence.retentionPolicy.%s is Delete but persistence.type is %s: a static PV is pre-bound to its claim's name and is never bound again once that claim is deleted (and its directory keeps the data): keep Retain and delete the claims, PVs and directories by hand" $when $.Values.persistence.type) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $tls := .Values.tls -}}
{{- $issuer := dig "issuerRef" "name" "" ($tls.certManager | default dict) -}}
{{- if and (not $tls.existingSecret) (not $issuer) -}}
{{- fail "tls.enabled is true but neither tls.existingSecret nor tls.certManager.issuerRef.name is set: name a Secret you made (keys tls.crt, tls.key, ca.crt; the certificate with serverAuth and clientAuth usages) in tls.existingSecret, or a cert-manager Issuer/ClusterIssuer in tls.certManager.issuerRef (name, kind) for the chart to render a Certificate" -}}
{{- end -}}
{{- if and $tls.existingSecret $issuer -}}
{{- fail (printf "tls.existingSecret (%s) and tls.certManager.issuerRef.name (%s) are both set: the certificate comes from one of them; unset tls.existingSecret to let cert-manager issue Secret %s-tls, or unset tls.certManager.issuerRef to use your Secret" $tls.existingSecret $issuer (include "redis-cluster.fullname" .)) -}}
{{- end -}}
{{- if not (has (toString $tls.authClients) (list "yes" "optional" "no")) -}}
{{- fail (printf "tls.authClients is %q: use \"yes\" (clients need a certificate signed by ca.crt), \"optional\" or \"no\" (quoted: a bare yes/no is a YAML boolean)" (toString $tls.authClients)) -}}
{{- end -}}
{{- $plain := int $tls.plainPort -}}
{{- $port := int .Values.redis.port -}}
{{- if or (lt $plain 0) (gt $plain 65535) -}}
{{- fail (printf "tls.plainPort (%d) is not a port: set 0 (TLS only) or a port number from 1 to 65535" $plain) -}}
{{- end -}}
{{- if or (eq $plain $port) (eq $plain (add $port 10000)) -}}
{{- fail (printf "tls.plainPort (%d) is redis.port (%d, the TLS client port) or redis.port + 10000 (%d, the cluster bus): set another port for plain TCP, or 0 for TLS only" $plain $port (add $port 10000)) -}}
{{- end -}}
{{- end -}}
{{- if gt (len (include "redis-cluster.fullname" .)) 52 -}}
{{- fail (printf "the full name %q is longer than 52 characters (StatefulSet pod labels need room for a revision hash): set fullnameOverride or a shorter release name" (include "redis-cluster.fullname" .)) -}}
{{- end -}}
{{- end -}}
