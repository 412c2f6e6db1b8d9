{{/*
The labels on every object's metadata: kustomize's part-of label, and Helm's usual ones
(the test that compares the chart with `kubectl kustomize .` removes exactly these).
*/}}
{{- define "kubekeeper.labels" -}}
app.kubernetes.io/part-of: kubekeeper
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kubekeeper.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* What every kubekeeper pod spec shares beyond the manifests: pull secrets, priority. */}}
{{- define "kubekeeper.podExtras" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* The policy file as mounted: the values' policy, as YAML. */}}
{{- define "kubekeeper.policy" -}}
{{ toYaml .Values.policy }}
{{- end -}}
