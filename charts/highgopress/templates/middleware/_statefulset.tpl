{{/* Headless governing Service + client Service of a demo middleware StatefulSet.
     Call with (dict "root" $ "component" "redis" "ports" (list (dict "name" "redis" "port" 6379))) */}}
{{- define "hgp.middlewareServices" -}}
{{- $full := include "hgp.componentName" (dict "root" .root "component" .component) }}
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}-headless
  labels:
    {{- include "hgp.labels" . | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "hgp.selectorLabels" . | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
    {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}
  labels:
    {{- include "hgp.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "hgp.selectorLabels" . | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
    {{- end }}
{{- end }}

{{/* volumeClaimTemplates entry "data"; call with the component's values */}}
{{- define "hgp.dataClaim" -}}
volumeClaimTemplates:
  - apiVersion: v1
    kind: PersistentVolumeClaim
    metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      {{- with .persistence.storageClass }}
      storageClassName: {{ . }}
      {{- end }}
      resources:
        requests:
          storage: {{ .persistence.size }}
{{- end }}

{{/* the common head of a demo middleware pod spec */}}
{{- define "hgp.middlewarePod" -}}
serviceAccountName: {{ include "hgp.componentName" (dict "root" .root "component" .component) }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "hgp.podSecurityContext" (dict "uid" .uid "gid" .gid "fsGroupChangePolicy" true) | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "hgp.middlewareServiceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "hgp.componentName" . }}
  labels:
    {{- include "hgp.labels" . | nindent 4 }}
automountServiceAccountToken: false
{{- end }}
