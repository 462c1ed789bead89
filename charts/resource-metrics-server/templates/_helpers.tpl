{{/* Object name shared by the ServiceAccount, Service, Deployment and RBAC objects (default: metrics-server). */}}
{{- define "rms.fullname" -}}
{{- .Values.fullnameOverride | default "metrics-server" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: the same as metrics-server's manifests (the Deployment selector is immutable). */}}
{{- define "rms.selectorLabels" -}}
k8s-app: {{ include "rms.fullname" . }}
{{- end -}}

{{- define "rms.labels" -}}
{{ include "rms.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "rms.serviceAccountName" -}}
{{- include "rms.fullname" . -}}
{{- end -}}

{{/* Fails rendering on value combinations that cannot work. */}}
{{- define "rms.validate" -}}
{{- if and .Values.hostNetwork.enabled (eq (int .Values.containerPort) 10250) -}}
{{- fail "hostNetwork.enabled with containerPort 10250 collides with the kubelet on every node (address already in use): set containerPort to a free port, e.g. 4443" -}}
{{- end -}}
{{- if eq .Values.tls.mode "secure" -}}
{{- if not .Values.tls.existingSecret -}}
{{- fail "tls.mode=secure needs tls.existingSecret (a kubernetes.io/tls Secret; certs/gen-certs.sh makes one)" -}}
{{- end -}}
{{- if not .Values.tls.caBundle -}}
{{- fail "tls.mode=secure needs tls.caBundle (base64 PEM of the CA that signed the serving certificate)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
