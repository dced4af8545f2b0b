{{/* Labels every object of the chart carries. */}}
{{- define "gpupaas.labels" -}}
app.kubernetes.io/part-of: gpupaas
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "gpupaas.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/* The webhooks' namespace allow-list: the system namespaces and the chart's own. */}}
{{- define "gpupaas.systemNamespaces" -}}
[{{ join ", " (append .Values.systemNamespaces .Values.namespace) }}]
{{- end }}
