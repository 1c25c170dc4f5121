{{/* Names and labels shared by every template. */}}

{{- define "kinfer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kinfer.selectorLabels" -}}
app.kubernetes.io/name: kinfer-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kinfer.labels" -}}
{{ include "kinfer.selectorLabels" . }}
app.kubernetes.io/part-of: kinfer
app.kubernetes.io/component: operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kinfer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kinfer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kinfer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "kinfer.runtimeImage" -}}
{{- default (printf "kinfer/runtime:%s" .Chart.AppVersion) .Values.runtime.image -}}
{{- end -}}

{{- define "kinfer.monitoringLabels" -}}
{{ include "kinfer.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kinfer.activatorSelectorLabels" -}}
app.kubernetes.io/name: kinfer-activator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kinfer.activatorLabels" -}}
{{ include "kinfer.activatorSelectorLabels" . }}
app.kubernetes.io/part-of: kinfer
app.kubernetes.io/component: activator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- /* The activator's rules: discovery of each model's pods, waking through the scale
subresource only. */ -}}
{{- define "kinfer.activatorRules" }}
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [get, patch]
{{- end -}}
