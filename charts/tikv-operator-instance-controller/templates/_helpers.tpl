{{- /* The release name when it already says what this is (e.g. tikv-operator-instance-controller), else RELEASE-instance-controller. */ -}}
{{- define "ctl.name" -}}
{{- if contains "instance-controller" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-instance-controller" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- define "ctl.labels" -}}
app.kubernetes.io/name: tikv-operator-instance-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: instance-controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "ctl.selector" -}}
app.kubernetes.io/name: tikv-operator-instance-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
