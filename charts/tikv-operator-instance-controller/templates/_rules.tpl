{{- define "ctl.rules" -}}
  # Instances (status, finalizers) and the pods, config and volumes of each.
  - apiGroups: [core.tikv.org]
    resources: [clusters]
    verbs: [get, list, watch]
  - apiGroups: [core.tikv.org]
    resources: [pds, tikvs]
    verbs: [get, list, watch, patch, update]
  - apiGroups: [core.tikv.org]
    resources: [pds/status, tikvs/status]
    verbs: [get, patch, update]
  - apiGroups: [core.tikv.org]
    resources: [pds/finalizers, tikvs/finalizers]
    verbs: [update]
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch, create, delete]
  - apiGroups: [""]
    resources: [configmaps, persistentvolumeclaims]
    verbs: [get, list, watch, create, patch, update]
  # With TLS: each instance's certificate Secret and the Cluster's client Secret, read by name
  # (no list or watch: it cannot enumerate Secrets).
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get]
{{- end -}}
