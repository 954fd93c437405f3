{{/* The service components in a fixed order, with their settings merged over default. */}}
{{- define "hgp.componentNames" -}}
gateway counter consumer analytics
{{- end }}

{{/* Environment of one component; call with (dict "root" $ "component" name "c" settings) */}}
{{- define "hgp.componentEnv" -}}
{{- $root := .root }}
{{- $c := .c }}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: HGP_LOG_LEVEL
  value: {{ $c.logLevel | quote }}
- name: HGP_METRICS_ADDR
  value: {{ printf ":%d" (int $c.metricsPort) | quote }}
{{- $consul := include "hgp.consulAddr" $root }}
{{- if $consul }}
- name: HGP_CONSUL_ADDR
  value: {{ $consul | quote }}
- name: HGP_CONSUL_TAGS
  value: {{ include "hgp.consulTag" $root | quote }}
- name: HGP_ADVERTISE_HOST
  value: "$(POD_IP)"
{{- end }}
{{- if eq .component "gateway" }}
- name: HGP_GATEWAY_ADDR
  value: {{ printf ":%d" (int $c.port) | quote }}
{{- if $consul }}
- name: HGP_GATEWAY_CONSUL_TAG
  value: {{ include "hgp.consulTag" $root | quote }}
{{- else }}
- name: HGP_GATEWAY_COUNTER_URLS
  value: {{ printf "http://%s:%d" (include "hgp.componentName" (dict "root" $root "component" "counter")) (int $root.Values.components.counter.port) | quote }}
{{- end }}
{{ include "hgp.secretEnv" (dict "root" $root "name" "HGP_IDENTITY_SECRET" "key" "identity-secret") }}
{{ include "hgp.secretEnv" (dict "root" $root "name" "HGP_JWT_HS256_SECRET" "key" "jwt-hs256-secret") }}
- name: HGP_JWT_ISSUER
  value: {{ $root.Values.jwt.issuer | quote }}
- name: HGP_JWT_AUDIENCE
  value: {{ $root.Values.jwt.audience | quote }}
{{- with $c.trustedProxies }}
- name: HGP_RATE_TRUSTED_PROXIES
  value: {{ . | quote }}
{{- end }}
{{- with $c.corsOrigins }}
- name: HGP_GATEWAY_CORS_ORIGINS
  value: {{ . | quote }}
{{- end }}
{{ include "hgp.redisEnv" $root }}
{{ include "hgp.kafkaEnv" $root }}
{{- else if eq .component "counter" }}
- name: HGP_COUNTER_ADDR
  value: {{ printf ":%d" (int $c.port) | quote }}
- name: HGP_RELAY_CONSUMER
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if $root.Values.redis.enabled }}
- name: HGP_COUNTER_REQUIRE_NOEVICTION
  value: "true"
{{- end }}
{{ include "hgp.secretEnv" (dict "root" $root "name" "HGP_IDENTITY_SECRET" "key" "identity-secret") }}
{{ include "hgp.redisEnv" $root }}
{{ include "hgp.kafkaEnv" $root }}
{{ include "hgp.mysqlEnv" $root }}
{{- else if eq .component "consumer" }}
- name: HGP_CONSUMER_ADDR
  value: {{ printf ":%d" (int $c.port) | quote }}
{{ include "hgp.kafkaEnv" $root }}
- name: HGP_KAFKA_PARTITIONS
  value: {{ $root.Values.kafka.partitions | quote }}
{{ include "hgp.mysqlEnv" $root }}
- name: HGP_CONSUMER_MIGRATE
  {{- /* the hook Job migrates before install only when MySQL is external */}}
  value: {{ not (and $root.Values.migrations.enabled (not $root.Values.mysql.enabled)) | quote }}
{{- else if eq .component "analytics" }}
- name: HGP_ANALYTICS_ADDR
  value: {{ printf ":%d" (int $c.port) | quote }}
{{ include "hgp.secretEnv" (dict "root" $root "name" "HGP_IDENTITY_SECRET" "key" "identity-secret") }}
{{ include "hgp.redisEnv" $root }}
{{ include "hgp.kafkaEnv" $root }}
{{- end }}
{{- range $k, $v := $c.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end }}

{{/* settings of one component: default merged under components.<name> */}}
{{- define "hgp.component" -}}
{{- $c := get .root.Values.components .component }}
{{- $d := deepCopy .root.Values.default }}
{{- $m := mergeOverwrite $d (deepCopy $c) }}
{{- $_ := set $m "env" (mergeOverwrite (deepCopy .root.Values.default.env) (deepCopy ($c.env | default dict))) }}
{{- if not $c.resources }}{{ $_ := set $m "resources" .root.Values.default.resources }}{{ end }}
{{- toYaml $m }}
{{- end }}
