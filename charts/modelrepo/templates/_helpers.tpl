{{/* Names and labels shared by every template. */}}
{{- define "modelrepo.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelrepo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelrepo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelrepo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modelrepo.labels" -}}
{{ include "modelrepo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: modelrepo
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "modelrepo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "modelrepo.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "modelrepo.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
The operator's rights, the same rules for the ClusterRole (cluster-wide install) and for each
Role (watchNamespaces). Least privilege: no delete on ModelRepos, no write on Secrets, no
pods/exec, nothing cluster-scoped.
*/}}
{{- define "modelrepo.rules" -}}
# ModelRepos: watch them, keep kopf's finalizer and progress annotations, write status.
- apiGroups: [modelrepo.dev]
  resources: [modelrepos]
  verbs: [get, list, watch, patch]
- apiGroups: [modelrepo.dev]
  resources: [modelrepos/status]
  verbs: [get, patch]
# Children: server-side apply (patch; create when new), prune (delete), observe rollout.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, create, patch, delete]
# Why a new version is not ready (Degraded message), and status updates as pods change: read-only.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# The gateway: its routing table (ConfigMap <repo>-gateway), and an annotation on its pods so the
# kubelet refreshes the mounted table at once (patch, metadata only; nothing restarts).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [patch]
# Git credentials and webhookSecret: read-only, by name (no list: the names come from spec.secretRef).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Environment builds (docs/operator.md, "Environments"): one Job per environment; pods are read
# above (their termination message says why a build failed). No delete: ttlSecondsAfterFinished.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create]
# Events on ModelRepos (kopf posts core/v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
