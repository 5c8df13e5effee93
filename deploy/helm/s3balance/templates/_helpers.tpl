{{- define "s3balance.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "s3balance.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "s3balance.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "s3balance.secretName" -}}
{{- if .Values.existingSecret -}}{{ .Values.existingSecret }}{{- else -}}{{ include "s3balance.fullname" . }}{{- end -}}
{{- end -}}

{{/* The initContainer that merges the Secret into the ConfigMap's config. */}}
{{- define "s3balance.renderConfig" -}}
- name: render-config
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - python
    - /etc/s3balance/base/render-config.py
    - /etc/s3balance/base/s3balance.yaml
    - /etc/s3balance/secret/secrets.yaml
    - /etc/s3balance/rendered/s3balance.yaml
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - {name: config, mountPath: /etc/s3balance/base, readOnly: true}
    - {name: secrets, mountPath: /etc/s3balance/secret, readOnly: true}
    - {name: rendered, mountPath: /etc/s3balance/rendered}
{{- end -}}

{{- define "s3balance.configVolumes" -}}
- name: config
  configMap:
    name: {{ include "s3balance.fullname" . }}
- name: secrets
  secret:
    secretName: {{ include "s3balance.secretName" . }}
    defaultMode: 0400
- name: rendered
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end -}}
