{{/*
Chart name, or nameOverride.
*/}}
{{- define "zk0.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: fullnameOverride, else <release>-<chart> (just <release> when it already contains the
chart name). Truncated to 63 characters (DNS label). Also the leader-election Lease name.
*/}}
{{- define "zk0.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: name-version.
*/}}
{{- define "zk0.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels of every resource the chart renders.
*/}}
{{- define "zk0.labels" -}}
helm.sh/chart: {{ include "zk0.chart" . }}
{{ include "zk0.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zk0
{{- end }}

{{/*
Selector labels: name and instance. Component-specific selectors add app.kubernetes.io/component.
*/}}
{{- define "zk0.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zk0.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the operator's own objects (Deployment, pods, Service): standard labels + component.
*/}}
{{- define "zk0.operatorLabels" -}}
{{ include "zk0.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Selector of the operator pods.
*/}}
{{- define "zk0.operatorSelectorLabels" -}}
{{ include "zk0.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "zk0.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zk0.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference "repository:tag" from one of .Values.image.*; the tag defaults to appVersion.
Call with (dict "image" .Values.image.worker "root" $).
*/}}
{{- define "zk0.image" -}}
{{- $repository := required "image repository is required" .image.repository }}
{{- if .image.digest }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" .image.digest) }}
{{- fail (printf "image digest %q is not sha256:<64 hex digits>" .image.digest) }}
{{- end }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- $tag := .image.tag | default .root.Chart.AppVersion | toString }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/*
RBAC scope, validated: "cluster" or "namespace".
*/}}
{{- define "zk0.rbacScope" -}}
{{- $scope := .Values.rbac.scope | default "namespace" }}
{{- if not (has $scope (list "cluster" "namespace")) }}
{{- fail (printf "rbac.scope must be cluster or namespace, not %q" $scope) }}
{{- end }}
{{- $scope }}
{{- end }}

{{/*
Namespace of the dashboard ConfigMaps.
*/}}
{{- define "zk0.dashboardsNamespace" -}}
{{- .Values.dashboards.namespace | default .Release.Namespace }}
{{- end }}
