{{/* Names */}}
{{- define "hgp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hgp.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* <fullname>-<component>; call with (dict "root" $ "component" "gateway") */}}
{{- define "hgp.componentName" -}}
{{- printf "%s-%s" (include "hgp.fullname" .root | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "hgp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: highgopress
app.kubernetes.io/version: {{ include "hgp.tag" .root | quote }}
{{ include "hgp.selectorLabels" . }}
{{- end }}

{{- define "hgp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hgp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "hgp.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* image of one of the project's components */}}
{{- define "hgp.image" -}}
{{- $repo := .root.Values.image.repository }}
{{- if .root.Values.image.registry }}{{ $repo = printf "%s/%s" .root.Values.image.registry $repo }}{{ end }}
{{- printf "%s/%s:%s" $repo .component (include "hgp.tag" .root) }}
{{- end }}

{{- define "hgp.secretName" -}}
{{- default (printf "%s-secrets" (include "hgp.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* Consul tag that keeps this release's instances apart in a shared Consul */}}
{{- define "hgp.consulTag" -}}
{{- printf "%s-%s" .Release.Namespace .Release.Name }}
{{- end }}

{{/* Middleware addresses: in-cluster demo or external */}}
{{- define "hgp.redisAddr" -}}
{{- if .Values.redis.enabled }}{{ printf "%s:6379" (include "hgp.componentName" (dict "root" . "component" "redis")) }}
{{- else }}{{ required "redis.external.addr is required when redis.enabled=false" .Values.redis.external.addr }}{{ end }}
{{- end }}

{{- define "hgp.kafkaBrokers" -}}
{{- if .Values.kafka.enabled }}{{ printf "%s:9092" (include "hgp.componentName" (dict "root" . "component" "kafka")) }}
{{- else }}{{ required "kafka.external.brokers is required when kafka.enabled=false" .Values.kafka.external.brokers }}{{ end }}
{{- end }}

{{- define "hgp.mysqlHostPort" -}}
{{- if .Values.mysql.enabled }}{{ printf "%s:3306" (include "hgp.componentName" (dict "root" . "component" "mysql")) }}
{{- else }}{{ printf "%s:%d" (required "mysql.external.host is required when mysql.enabled=false" .Values.mysql.external.host) (int .Values.mysql.external.port) }}{{ end }}
{{- end }}

{{- define "hgp.consulAddr" -}}
{{- if .Values.consul.enabled }}{{ printf "http://%s:8500" (include "hgp.componentName" (dict "root" . "component" "consul")) }}
{{- else }}{{ .Values.consul.external.addr }}{{ end }}
{{- end }}

{{/* Pod- and container-level security contexts: Pod Security "restricted" */}}
{{- define "hgp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 65532 }}
runAsGroup: {{ .gid | default 65532 }}
fsGroup: {{ .gid | default 65532 }}
{{- if .fsGroupChangePolicy }}
fsGroupChangePolicy: OnRootMismatch
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "hgp.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* env entries reading one key of the release secret */}}
{{- define "hgp.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "hgp.secretName" .root }}
      key: {{ .key }}
{{- if .optional }}
      optional: true
{{- end }}
{{- end }}

{{/* MYSQL_PASSWORD then HGP_MYSQL_DSN built from it (Kubernetes expands $(MYSQL_PASSWORD);
     the password never appears in the rendered objects) */}}
{{- define "hgp.mysqlEnv" -}}
{{ include "hgp.secretEnv" (dict "root" . "name" "MYSQL_PASSWORD" "key" "mysql-password") }}
- name: HGP_MYSQL_DSN
  value: {{ printf "%s:$(MYSQL_PASSWORD)@tcp(%s)/%s?%s" .Values.mysql.user (include "hgp.mysqlHostPort" .) .Values.mysql.database .Values.mysql.params | quote }}
{{- end }}

{{- define "hgp.redisEnv" -}}
- name: HGP_REDIS_ADDR
  value: {{ include "hgp.redisAddr" . | quote }}
- name: HGP_REDIS_DB
  value: {{ .Values.redis.db | quote }}
{{ include "hgp.secretEnv" (dict "root" . "name" "HGP_REDIS_PASSWORD" "key" "redis-password" "optional" true) }}
{{- end }}

{{- define "hgp.kafkaEnv" -}}
- name: HGP_KAFKA_BROKERS
  value: {{ include "hgp.kafkaBrokers" . | quote }}
- name: HGP_KAFKA_TOPIC
  value: {{ .Values.kafka.topic | quote }}
{{- end }}

{{/* labels of the pods of a list of components, as NetworkPolicy peers */}}
{{- define "hgp.peers" -}}
{{- $root := .root }}
{{- range .components }}
- podSelector:
    matchLabels:
      {{- include "hgp.selectorLabels" (dict "root" $root "component" .) | nindent 6 }}
{{- end }}
{{- end }}

{{/* Production mode: secrets only from an existing Secret */}}
{{- define "hgp.validate" -}}
{{- if and (eq .Values.mode "production") (not .Values.secrets.existingSecret) }}
{{- fail "secrets.existingSecret is required in production mode (mode=production generates no secrets): create a Secret with the keys identity-secret, jwt-hs256-secret, mysql-password, redis-password and set secrets.existingSecret" }}
{{- end }}
{{- if .Values.secrets.existingSecret }}
{{- $s := lookup "v1" "Secret" .Release.Namespace .Values.secrets.existingSecret }}
{{- if $s }}
{{- range $k := list "identity-secret" "jwt-hs256-secret" "mysql-password" }}
{{- if not (hasKey ($s.data | default dict) $k) }}
{{- fail (printf "secrets.existingSecret: Secret %q has no key %q" $.Values.secrets.existingSecret $k) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
