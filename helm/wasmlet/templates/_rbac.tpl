{{/*
Rule lists of the operator's RBAC, shared by its ClusterRole (cluster-wide operator) and its Role
(operator.watchNamespace). The reason for each rule is above it.
*/}}

{{/* What the operator does to namespaced resources: in a ClusterRole, or a Role of the watched namespace. */}}
{{- define "wasmlet.operator.namespacedRules" -}}
# WasmWorkloads: listed and watched (kopf's event handler fills the operator's cache).
- apiGroups: [wasmlet.dev]
  resources: [wasmworkloads]
  verbs: [list, watch]
# The aggregated status the operator writes.
- apiGroups: [wasmlet.dev]
  resources: [wasmworkloads/status]
  verbs: [patch]
# The Pods it places, watched into a cache; never updated in place (a Pod's spec is immutable).
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, create, delete]
# Services: all watched into a cache, so that an HTTP workload's Service never takes a name that is
# taken; its own (spec.http.service) created, patched back when it drifts, deleted when not wanted.
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
# SuccessfulCreate/SuccessfulDelete and the warnings `kubectl describe ww` shows.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.operator.peering.enabled }}
# The peering object replicas agree through: created if missing, watched and patched by kopf.
- apiGroups: [kopf.dev]
  resources: [{{ if .Values.operator.watchNamespace }}kopfpeerings{{ else }}clusterkopfpeerings{{ end }}]
  verbs: [list, watch, create, patch]
{{- end }}
{{- end }}

{{/* What the operator reads cluster-wide in either mode. */}}
{{- define "wasmlet.operator.clusterRules" -}}
# The wasm Nodes placement reads (watched into a cache; one read to confirm a lost node).
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch]
# kopf finds the resources it serves through the CRDs.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}
