{{/* The chart name, or nameOverride. */}}
{{- define "foreseer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" (or just the release when it already contains the chart name), or fullnameOverride. */}}
{{- define "foreseer.fullname" -}}
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

{{/* Labels that select the operator pods; never change them after install (selectors are immutable). */}}
{{- define "foreseer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "foreseer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the release, so `kubectl get all -l app.kubernetes.io/instance=<release>` finds them. */}}
{{- define "foreseer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "foreseer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "foreseer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "foreseer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "foreseer.peeringName" -}}
{{- default (include "foreseer.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "foreseer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the Prometheus credentials are mounted in the operator container. */}}
{{- define "foreseer.secretsDir" -}}/var/run/secrets/foreseer{{- end }}
