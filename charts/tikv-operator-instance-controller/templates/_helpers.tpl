{{- define "ctl.name" -}}{{ .Release.Name }}-instance-controller{{- end -}}
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
