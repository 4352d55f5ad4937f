{{/*
The parts of Carnet, in port order: the five gRPC services. The gateway is separate.
*/}}
{{- define "carnet.grpcServices" -}}
identity consent dossier imaging notify
{{- end }}

{{- define "carnet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects; a part's objects are "<fullname>-<part>".
*/}}
{{- define "carnet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "carnet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of a part's objects. Call with (dict "root" $ "part" "identity").
*/}}
{{- define "carnet.labels" -}}
helm.sh/chart: {{ include "carnet.chart" .root }}
{{ include "carnet.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: carnet
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "carnet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "carnet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .part }}
{{- end }}

{{- define "carnet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "carnet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
A part's image. Call with (dict "root" $ "part" "identity").
*/}}
{{- define "carnet.image" -}}
{{- $image := .root.Values.image }}
{{- $tag := default .root.Chart.AppVersion $image.tag }}
{{- if $image.registry }}
{{- printf "%s/%s%s:%s" (trimSuffix "/" $image.registry) $image.prefix .part $tag }}
{{- else }}
{{- printf "%s%s:%s" $image.prefix .part $tag }}
{{- end }}
{{- end }}

{{/*
Refuses values whose pods would be killed before their graceful stop ends.
Call with (dict "root" $ "drainSeconds" <seconds the process needs after SIGTERM>).
*/}}
{{- define "carnet.checkGracePeriod" -}}
{{- $v := .root.Values -}}
{{- $needed := addf $v.preStopSleepSeconds .drainSeconds }}
{{- if le (float64 $v.terminationGracePeriodSeconds) (float64 $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + graceSeconds (%v)" $v.terminationGracePeriodSeconds $needed) }}
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by every part. Call with (dict "root" $ "part" "identity").
Dossier (documents), imaging (DICOM objects) and notify (attachments) also mount the master
keys that seal blobs;
identity mounts every platform service's secret, and each service listed in
serviceSecrets.services its own (for its token from identity).
*/}}
{{- define "carnet.podSpecCommon" -}}
{{- $v := .root.Values -}}
serviceAccountName: {{ include "carnet.serviceAccountName" .root }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "carnet.selectorLabels" . | nindent 8 }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $v.tmpVolume.sizeLimit }}
{{- if has .part (list "dossier" "imaging" "notify") }}
  - name: master-keys
    secret:
      secretName: {{ required "masterKeys.existingSecret is required" $v.masterKeys.existingSecret }}
      defaultMode: 0400
      items:
        - key: {{ $v.masterKeys.key }}
          path: master-keys
{{- end }}
{{- if eq .part "identity" }}
  - name: service-secrets
    secret:
      secretName: {{ required "serviceSecrets.existingSecret is required" $v.serviceSecrets.existingSecret }}
      defaultMode: 0400
      items:
        {{- range $v.serviceSecrets.services }}
        - key: {{ . }}
          path: {{ . }}
        {{- end }}
{{- else if has .part $v.serviceSecrets.services }}
  - name: service-secret
    secret:
      secretName: {{ required "serviceSecrets.existingSecret is required" $v.serviceSecrets.existingSecret }}
      defaultMode: 0400
      items:
        - key: {{ .part }}
          path: service-secret
{{- end }}
{{- end }}

{{/*
Container-level settings shared by every part: hardening, /tmp, the graceful stop.
*/}}
{{- define "carnet.containerCommon" -}}
{{- $v := .root.Values -}}
imagePullPolicy: {{ $v.image.pullPolicy }}
securityContext:
  {{- toYaml $v.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- if has .part (list "dossier" "imaging" "notify") }}
  - name: master-keys
    mountPath: /etc/carnet/master-keys
    readOnly: true
{{- end }}
{{- if eq .part "identity" }}
  - name: service-secrets
    mountPath: /etc/carnet/service-secrets
    readOnly: true
{{- else if has .part .root.Values.serviceSecrets.services }}
  - name: service-secret
    mountPath: /etc/carnet/service-secret
    readOnly: true
{{- end }}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ $v.preStopSleepSeconds }}"]
{{- end }}

{{/*
The database and Redis URLs, from existing Secrets.
*/}}
{{- define "carnet.env.redis" -}}
- name: CARNET_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "redis.existingSecret is required" .Values.redis.existingSecret }}
      key: {{ .Values.redis.urlKey }}
{{- end }}

{{- define "carnet.env.database" -}}
- name: CARNET_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required" .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
{{- end }}

{{/*
Plain extra variables of one part, from its "env" map.
*/}}
{{- define "carnet.env.extra" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
