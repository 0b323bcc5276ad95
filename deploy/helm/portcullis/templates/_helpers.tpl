{{/* The release's name for objects: release-chart, or the release alone when it already says portcullis. */}}
{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The configuration: values.config with the listen addresses from values.ports. */}}
{{- define "portcullis.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := default dict (get $cfg "server") -}}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.ports.api)) -}}
{{- if .Values.ports.postgres -}}
{{- $_ := set $server "postgres_listen" (printf "0.0.0.0:%d" (int .Values.ports.postgres)) -}}
{{- end -}}
{{- if .Values.ports.http -}}
{{- $_ := set $server "http_listen" (printf "0.0.0.0:%d" (int .Values.ports.http)) -}}
{{- end -}}
{{- $_ := set $cfg "server" $server -}}
{{- toYaml $cfg -}}
{{- end -}}
