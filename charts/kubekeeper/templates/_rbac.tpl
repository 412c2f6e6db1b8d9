{{/*
Each cluster task's ClusterRole rules: exactly what that task uses, as in cronjobs/<task>.yaml.
A test compares a chart install's `auth can-i` matrix with the kustomize install's.
*/}}
{{- define "kubekeeper.rules.requests" -}}
- apiGroups: [""]
  resources: [namespaces, pods]
  verbs: [get, list]
- apiGroups: [""]
  resources: [pods/resize]    # action: resize (in-place, no restart); opt-in in the policy
  verbs: [patch]
- apiGroups: [""]
  resources: [limitranges]
  verbs: [get, list, create, patch]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, list, patch]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [metrics.k8s.io]
  resources: [pods]
  verbs: [get, list]
{{- end -}}

{{- define "kubekeeper.rules.revisions" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, list, patch]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list, patch, delete]   # patch: the ownerless-since annotation
- apiGroups: [apps]
  resources: [controllerrevisions]
  verbs: [get, list]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{- define "kubekeeper.rules.jobs" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, delete]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
