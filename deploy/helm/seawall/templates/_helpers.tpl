{{/* Names and labels shared by every object of the release. */}}
{{- define "seawall.fullname" -}}
{{- printf "%s-seawall" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "seawall.labels" -}}
app.kubernetes.io/name: seawall
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "seawall.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end -}}

{{- define "seawall.tlsSecret" -}}
{{- default (printf "%s-temporal-tls" (include "seawall.fullname" .)) .Values.temporal.tls.existingSecret -}}
{{- end -}}

{{- define "seawall.payloadSecret" -}}
{{- default (printf "%s-payload-keys" (include "seawall.fullname" .)) .Values.payloadKeys.existingSecret -}}
{{- end -}}

{{/* SEAWALL_* settings every pod shares (seawall.config.Settings reads them). */}}
{{- define "seawall.commonEnv" -}}
- name: SEAWALL_TEMPORAL_ADDRESS
  value: {{ .Values.temporal.address | quote }}
- name: SEAWALL_TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
- name: SEAWALL_INVENTORY
  value: /etc/seawall/inventory.yaml
- name: SEAWALL_PLANS_DIR
  value: /etc/seawall/plans
{{- if .Values.temporal.tls.enabled }}
- name: SEAWALL_TEMPORAL_TLS_CA
  value: /etc/seawall/tls/ca.crt
- name: SEAWALL_TEMPORAL_TLS_CERT
  value: /etc/seawall/tls/tls.crt
- name: SEAWALL_TEMPORAL_TLS_KEY
  value: /etc/seawall/tls/tls.key
{{- with .Values.temporal.tls.serverName }}
- name: SEAWALL_TEMPORAL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if .Values.payloadKeys.keys }}
- name: SEAWALL_PAYLOAD_KEYS
  value: {{ include "seawall.payloadRefs" . | quote }}
- name: SEAWALL_PAYLOAD_REQUIRE_ENCRYPTION
  value: {{ .Values.payloadKeys.requireEncryption | quote }}
{{- end }}
{{- if .Values.intentKeys.keys }}
- name: SEAWALL_INTENT_KEYS
  value: {{ include "seawall.intentRefs" . | quote }}
- name: SEAWALL_INTENT_UNSIGNED_DRILLS
  value: {{ .Values.intentKeys.unsignedDrills | quote }}
- name: SEAWALL_INTENT_CONFIRM_WAIT_S
  value: {{ .Values.intentKeys.confirmWaitSeconds | quote }}
{{- end }}
{{- end -}}

{{- define "seawall.intentSecret" -}}
{{- default (printf "%s-intent-keys" (include "seawall.fullname" .)) .Values.intentKeys.existingSecret -}}
{{- end -}}

{{/* file:/etc/seawall/intent-keys/<name> for each key, comma-separated, in the order given. */}}
{{- define "seawall.intentRefs" -}}
{{- $refs := list -}}
{{- range .Values.intentKeys.keys -}}
{{- $refs = append $refs (printf "file:/etc/seawall/intent-keys/%s" .name) -}}
{{- end -}}
{{- join "," $refs -}}
{{- end -}}

{{/* file:/etc/seawall/payload-keys/<name> for each key, comma-separated, in the order given. */}}
{{- define "seawall.payloadRefs" -}}
{{- $refs := list -}}
{{- range .Values.payloadKeys.keys -}}
{{- $refs = append $refs (printf "file:/etc/seawall/payload-keys/%s" .name) -}}
{{- end -}}
{{- join "," $refs -}}
{{- end -}}
