{{/* Names and labels shared by every template. */}}
{{- define "valkey-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "valkey-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "valkey-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "valkey-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "valkey-operator.labels" -}}
{{ include "valkey-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "valkey-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "valkey-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespaced rules, in every watched namespace (or cluster-wide). Checked against the operator's
     declared needs (valkey_operator.k8s.client.NAMESPACED_PERMISSIONS) by a test. */}}
{{- define "valkey-operator.namespacedRules" -}}
- apiGroups: [valkeyops.dev]
  resources: [valkeyclusters]
  verbs: [get, list, watch, patch]
- apiGroups: [valkeyops.dev]
  resources: [valkeyclusters/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [cert-manager.io]
  resources: [certificates]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [cert-manager.io]
  resources: [certificates/status]
  verbs: [patch]
- apiGroups: [cert-manager.io]
  resources: [issuers]
  verbs: [get]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, create, patch]
{{- end -}}

{{/* Cluster-scoped rules kopf needs whatever the scope (CLUSTER_PERMISSIONS). */}}
{{- define "valkey-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [cert-manager.io]
  resources: [clusterissuers]
  verbs: [get]
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, create, patch]
{{- end -}}

{{/* Watching listed namespaces, kopf follows Namespace objects (NAMESPACE_OBSERVER_PERMISSIONS). */}}
{{- define "valkey-operator.namespaceObserverRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end -}}
