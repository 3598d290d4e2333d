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

{{- /*
A comma-separated env value from a list of values entries: each through `tpl` (so it may
name the release and namespace), duplicates dropped, order kept.
Call with (dict "list" LIST "root" $).
*/ -}}
{{- define "mcp-hub.joinList" -}}
{{- $out := list -}}
{{- range .list -}}
{{- $out = append $out (tpl (toString .) $.root) -}}
{{- end -}}
{{- join "," (uniq $out) -}}
{{- end -}}
