{{/* Chart name, overridable. */}}
{{- define "glrt-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: <release>-glrt-operator, or the release name when it already contains the chart name. */}}
{{- define "glrt-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped names carry the release namespace: two releases of the same name never collide. */}}
{{- define "glrt-operator.clusterScopedName" -}}
{{- printf "%s-%s" (include "glrt-operator.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{/* The base name of the executor's ClusterRoles (its permission groups are `<name>-<group>`). */}}
{{- define "glrt-operator.executorRole" -}}
{{- printf "%s-executor" (include "glrt-operator.clusterScopedName" .) | trunc 230 | trimSuffix "-" -}}
{{- end -}}

{{- define "glrt-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "glrt-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The labels the chart sets itself. commonLabels and podLabels may not set them: values.schema.json refuses them, and
so does the check below when the schema is skipped. Otherwise a user's app.kubernetes.io/name or instance would
replace the Deployment's pod labels but not its selector, and the API server would refuse the Deployment.
*/}}
{{- define "glrt-operator.chartLabels" -}}
{{ include "glrt-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "glrt-operator.checkLabels" -}}
{{- $ours := include "glrt-operator.chartLabels" . | fromYaml -}}
{{- range $field := list "commonLabels" "podLabels" -}}
{{- range $key, $_ := index $.Values $field -}}
{{- if hasKey $ours $key -}}
{{- fail (printf "%s: label %q is set by the chart itself (the Deployment selects its pods by app.kubernetes.io/name and app.kubernetes.io/instance); remove it" $field $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Every resource's labels: the chart's and commonLabels, as one map (no key twice). */}}
{{- define "glrt-operator.labels" -}}
{{- include "glrt-operator.checkLabels" . -}}
{{- merge (dict) (include "glrt-operator.chartLabels" . | fromYaml) .Values.commonLabels | toYaml -}}
{{- end -}}

{{/* The operator pod's labels: the chart's, then podLabels, then commonLabels (the more specific wins). */}}
{{- define "glrt-operator.podLabels" -}}
{{- include "glrt-operator.checkLabels" . -}}
{{- merge (dict) (include "glrt-operator.chartLabels" . | fromYaml) .Values.podLabels .Values.commonLabels | toYaml -}}
{{- end -}}

{{/* metadata.annotations, only when there are any. */}}
{{- define "glrt-operator.annotations" -}}
{{- with .Values.commonAnnotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "glrt-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "glrt-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "glrt-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The watched namespaces, deduplicated, in the order given. Empty: the whole cluster. */}}
{{- define "glrt-operator.namespaces" -}}
{{- toJson (uniq .Values.watch.namespaces) -}}
{{- end -}}

{{/*
The operator's permissions: exactly the calls it makes, each one needed (tests/e2e/test_helm_chart.py runs the
operator as this ServiceAccount). Identical in both modes; only where they are bound differs.
*/}}
{{- define "glrt-operator.connectionNamespace" -}}
{{- .Values.connections.secretNamespace | default .Release.Namespace -}}
{{- end }}

{{/* The Lease the replicas elect their active one through (replicaCount > 1), in the release namespace. */}}
{{- define "glrt-operator.leaseName" -}}
{{ include "glrt-operator.fullname" . }}-leader
{{- end -}}

{{- define "glrt-operator.rules" -}}
# Kopf lists and watches Runners, DeployTokens and GitLabConnections, and merge/JSON-patches them for its finalizer
# and progress annotations; a Runner's or DeployToken's connection is read by name.
- apiGroups: ["glrt.dev"]
  resources: ["runners", "deploytokens", "gitlabconnections"]
  verbs: ["get", "list", "watch", "patch"]
# Status: read before acting (not the event's snapshot), written by Kopf and at once after each GitLab write.
- apiGroups: ["glrt.dev"]
  resources: ["runners/status", "deploytokens/status", "gitlabconnections/status"]
  verbs: ["get", "patch"]
# Setting blockOwnerDeletion on the children's owner references needs this where the
# OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift).
- apiGroups: ["glrt.dev"]
  resources: ["runners/finalizers", "deploytokens/finalizers", "gitlabconnections/finalizers"]
  verbs: ["update"]
# Secrets: the access token and CA are read by name; the token, config and deploy-token Secrets are server-side
# applied (an apply that creates needs create too); a DeployToken's copies in other namespaces, which no owner
# reference reaches, are deleted by name. No list or watch: the operator never enumerates Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "delete"]
# The runner manager StatefulSet is server-side applied (read first, before a Runner's runner is created, to
# refuse a StatefulSet of the same name it does not own); its ready replica count is read from the status. Resyncs
# read the children from watch caches: list and watch with the label selector glrt.dev/runner (pods,
# StatefulSets, ServiceAccounts, PodDisruptionBudgets, RoleBindings; never Secrets).
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets/status"]
  verbs: ["get"]
# Manager pods: before removing a scaled-away replica's runner manager in GitLab it checks by name that the pod
# is gone; it lists a Runner's pods (by label) to show draining replicas; after a config Secret change (a token
# rotation) it patches an annotation on each, so the kubelet refreshes the Secret volume at once.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch"]
# Kopf posts core v1 Events (never events.k8s.io, never patches them).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# The executor's identity: each Runner's ServiceAccount (server-side applied; a user's own is only checked to
# exist), its manager pods' PodDisruptionBudget, and in the executor namespace the RoleBindings of the chart's
# executor ClusterRoles, which the operator may bind but does not hold (no pods/exec, pods/attach, Secret list).
# Each is read first (get) and applied only when it differs from what the Runner wants.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["bind"]
  resourceNames:
    {{- $base := include "glrt-operator.executorRole" . }}
    {{- range list "" "-disruption-budgets" "-pod-events" "-pod-logs" "-suspendable" }}
    - {{ printf "%s%s" $base . | quote }}
    {{- end }}
# Whether a user's own ServiceAccount may do what the executor needs (spec.manager.serviceAccountName).
- apiGroups: ["authorization.k8s.io"]
  resources: ["localsubjectaccessreviews"]
  verbs: ["create"]
{{- end -}}

{{/* "true" when the pods leave their user, group and fsGroup to OpenShift's security context constraints. */}}
{{- define "glrt-operator.platformAssignsIds" -}}
{{- $mode := .Values.compatibility.openshift.adaptSecurityContext -}}
{{- if or (eq $mode "force") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "security.openshift.io/v1")) -}}
true
{{- end -}}
{{- end -}}
