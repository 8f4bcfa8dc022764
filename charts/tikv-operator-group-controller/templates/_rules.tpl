{{- define "ctl.rules" -}}
  # Groups and their status; instance objects; Services, PodDisruptionBudgets and revisions of
  # each group.
  - apiGroups: [core.tikv.org]
    resources: [clusters]
    verbs: [get, list, watch]
  - apiGroups: [core.tikv.org]
    resources: [pdgroups, tikvgroups]
    verbs: [get, list, watch]
  # The finalizer that keeps the only PD group of a live Cluster from being deleted.
  - apiGroups: [core.tikv.org]
    resources: [pdgroups]
    verbs: [patch]
  - apiGroups: [core.tikv.org]
    resources: [pdgroups/status, tikvgroups/status]
    verbs: [get, patch, update]
  - apiGroups: [core.tikv.org]
    resources: [pds, tikvs]
    verbs: [get, list, watch, create, patch, update, delete]
  - apiGroups: [""]
    resources: [services]
    verbs: [get, list, watch, create, patch, update]
  - apiGroups: [policy]
    resources: [poddisruptionbudgets]
    verbs: [get, list, watch, create, patch, update]
  - apiGroups: [apps]
    resources: [controllerrevisions]
    verbs: [get, list, watch, create, delete]
{{- end -}}
