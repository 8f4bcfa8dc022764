{{- define "ctl.name" -}}{{ .Release.Name }}-cluster-controller{{- end -}}
{{- define "ctl.labels" -}}
app.kubernetes.io/name: tikv-operator-cluster-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: cluster-controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "ctl.selector" -}}
app.kubernetes.io/name: tikv-operator-cluster-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
