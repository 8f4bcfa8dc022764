{{- define "ctl.rules" -}}
  # Reads its clusters and their groups; writes Cluster status.
  - apiGroups: [core.tikv.org]
    resources: [clusters, pdgroups, tikvgroups]
    verbs: [get, list, watch]
  - apiGroups: [core.tikv.org]
    resources: [clusters/status]
    verbs: [get, patch, update]
  # A deleted Cluster takes its groups with it: its finalizer, and the groups' deletion.
  - apiGroups: [core.tikv.org]
    resources: [clusters]
    verbs: [patch]
  - apiGroups: [core.tikv.org]
    resources: [clusters/finalizers]
    verbs: [update]
  - apiGroups: [core.tikv.org]
    resources: [pdgroups, tikvgroups]
    verbs: [delete]
  # With TLS: the Cluster's client Secret (its certificate for PD), read by name only.
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get]
{{- end -}}
