{{/*
Helpers of the wasmlet chart. Every name is namespaced `wasmlet.` so a parent chart's helpers
never collide with ours (cert-manager's convention).
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "wasmlet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The base name of every object: fullnameOverride, else the release name when it already
contains the chart's name, else "<release>-<chart>". At most 63 characters (a label value).
*/}}
{{- define "wasmlet.fullname" -}}
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

{{/* "name-version" of the chart, for the helm.sh/chart label. */}}
{{- define "wasmlet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of the release (app.kubernetes.io/* recommended labels). */}}
{{- define "wasmlet.labels" -}}
helm.sh/chart: {{ include "wasmlet.chart" . }}
app.kubernetes.io/name: {{ include "wasmlet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: wasmlet
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels that select one component's Pods; stable across upgrades (selectors are immutable). */}}
{{- define "wasmlet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wasmlet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's objects: the release's plus the component. Call with (dict "root" $ "component" "operator"). */}}
{{- define "wasmlet.componentLabels" -}}
{{ include "wasmlet.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "wasmlet.operator.fullname" -}}
{{- printf "%s-operator" (include "wasmlet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wasmlet.agent.fullname" -}}
{{- printf "%s-agent" (include "wasmlet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's ServiceAccount: the one created here, or the one named in values. */}}
{{- define "wasmlet.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "wasmlet.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wasmlet.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create -}}
{{- default (include "wasmlet.agent.fullname" .) .Values.agent.serviceAccount.name -}}
{{- else -}}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
An image reference from an image block: registry/repository:tag, or @digest when a digest is
set (a digest pins the image; the tag is then only informative). The tag defaults to the
chart's appVersion. Call with (dict "image" .Values.operator.image "root" $).
*/}}
{{- define "wasmlet.image" -}}
{{- $repository := .image.repository -}}
{{- if .image.registry -}}
{{- $repository = printf "%s/%s" .image.registry .image.repository -}}
{{- end -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s:%s@%s" $repository $tag .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The agent's extra Node labels as one "k=v,k2=v2" string (AgentSettings.node_labels), in key order. */}}
{{- define "wasmlet.agent.nodeLabels" -}}
{{- $labels := list -}}
{{- range $key, $value := .Values.agent.nodeLabels -}}
{{- $labels = append $labels (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $labels -}}
{{- end -}}
