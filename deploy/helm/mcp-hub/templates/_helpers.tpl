{{- define "mcp-hub.labels" -}}
app.kubernetes.io/part-of: mcp-hub
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mcp-hub.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "mcp-hub.redisUrl" -}}
{{- if .Values.redis.enabled -}}
redis://{{ .Release.Name }}-redis:6379
{{- else -}}
{{ required "redis.externalUrl is required when redis.enabled=false" .Values.redis.externalUrl }}
{{- end -}}
{{- end -}}

{{- define "mcp-hub.commonEnv" -}}
- name: REDIS_URL
  value: {{ include "mcp-hub.redisUrl" . | quote }}
- name: MCP_KEY_PREFIX
  value: {{ .Values.keyPrefix | quote }}
- name: MCP_LOG_FORMAT
  value: json
{{- end -}}
