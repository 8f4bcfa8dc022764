{{- /* The release name when it already says what this is (e.g. tikv-operator-group-controller), else RELEASE-group-controller. */ -}}
{{- define "ctl.name" -}}
{{- if contains "group-controller" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-group-controller" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- define "ctl.labels" -}}
app.kubernetes.io/name: tikv-operator-group-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: group-controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "ctl.selector" -}}
app.kubernetes.io/name: tikv-operator-group-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
