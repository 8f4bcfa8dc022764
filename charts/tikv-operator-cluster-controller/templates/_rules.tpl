{{- define "ctl.rules" -}}
  # Reads its clusters and their groups; writes only Cluster status.
  - apiGroups: [core.tikv.org]
    resources: [clusters, pdgroups, tikvgroups]
    verbs: [get, list, watch]
  - apiGroups: [core.tikv.org]
    resources: [clusters/status]
    verbs: [get, patch, update]
{{- end -}}
