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
Secret and key that hold the password.
*/}}
{{- define "redis-cluster.secretName" -}}
{{- default (include "redis-cluster.fullname" .) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "redis-cluster.secretPasswordKey" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecretPasswordKey -}}
{{- else -}}
redis-password
{{- end -}}
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
Hook image reference.
*/}}
{{- define "redis-cluster.hookImage" -}}
{{- printf "%s:%s" .Values.hook.image.repository .Values.hook.image.tag -}}
{{- end -}}

{{/*
Redis image reference.
*/}}
{{- define "redis-cluster.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/*
Checks that values.schema.json cannot express; each failure names the keys to fix.
*/}}
{{- define "redis-cluster.validate" -}}
{{- if and .Values.auth.enabled (not .Values.auth.password) (not .Values.auth.existingSecret) -}}
{{- fail "auth.enabled is true but neither auth.password nor auth.existingSecret is set: set one of them (no password is ever generated)" -}}
{{- end -}}
{{- if and .Values.auth.password .Values.auth.existingSecret -}}
{{- fail "auth.password and auth.existingSecret are both set: set only one of them" -}}
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
{{- if gt (len (include "redis-cluster.fullname" .)) 52 -}}
{{- fail (printf "the full name %q is longer than 52 characters (StatefulSet pod labels need room for a revision hash): set fullnameOverride or a shorter release name" (include "redis-cluster.fullname" .)) -}}
{{- end -}}
{{- end -}}
