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

{{/* The registry (host[:port]) of bundles.ociReference, and the port OPA reaches it on. */}}
{{- define "gpupaas.registry" -}}
{{ first (splitList "/" .Values.bundles.ociReference) }}
{{- end }}
{{- define "gpupaas.registryPort" -}}
{{ regexFind ":[0-9]+$" (include "gpupaas.registry" .) | trimPrefix ":" | default "443" }}
{{- end }}
