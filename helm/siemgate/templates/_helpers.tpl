{{/* Names and labels. */}}
{{- define "siemgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "siemgate.fullname" -}}
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

{{- define "siemgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: dict "root" $ "component" "ingest" ("sink" NAME). */}}
{{- define "siemgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "siemgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- if .sink }}
siemgate.io/sink: {{ .sink }}
{{- end }}
{{- end -}}

{{- define "siemgate.labels" -}}
helm.sh/chart: {{ include "siemgate.chart" .root }}
{{ include "siemgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: siemgate
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "siemgate.ingestName" -}}
{{- printf "%s-ingest" (include "siemgate.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/* A sink's forwarder: dict "root" $ "sink" NAME. */}}
{{- define "siemgate.forwarderName" -}}
{{- printf "%s-fwd-%s" (include "siemgate.fullname" .root | trunc 30 | trimSuffix "-") .sink | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "siemgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "siemgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "siemgate.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "embedded" or "kafka". */}}
{{- define "siemgate.mode" -}}
{{- $bus := .Values.config.bus | default dict -}}
{{- $bus.type | default "embedded" -}}
{{- end -}}

{{- define "siemgate.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "siemgate.fullname" .) -}}
{{- end -}}

{{/* Does any Secret provide the pods' variables? */}}
{{- define "siemgate.hasSecret" -}}
{{- if or .Values.secrets.existingSecret .Values.secrets.values -}}true{{- end -}}
{{- end -}}

{{- define "siemgate.kafka" -}}
{{- $bus := .Values.config.bus | default dict -}}
{{- toYaml ($bus.kafka | default dict) -}}
{{- end -}}

{{/* The topics' prefix, as siemgate computes it (KafkaConfig.topic_prefix, default siemgate). */}}
{{- define "siemgate.topicPrefix" -}}
{{- $kafka := include "siemgate.kafka" . | fromYaml -}}
{{- $kafka.topic_prefix | default "siemgate" -}}
{{- end -}}

{{/* A sink's consumer group, as siemgate.forwarders.runtime.group_id: dict "root" $ "sink" NAME. */}}
{{- define "siemgate.consumerGroup" -}}
{{- $forward := .root.Values.config.forward | default dict -}}
{{- printf "%s-%s" ($forward.group_prefix | default (include "siemgate.topicPrefix" .root)) .sink -}}
{{- end -}}

{{- define "siemgate.partitions" -}}
{{- $kafka := include "siemgate.kafka" . | fromYaml -}}
{{- $topics := $kafka.topics | default dict -}}
{{- $topics.partitions | default 6 | int -}}
{{- end -}}

{{- define "siemgate.listenPort" -}}
{{- $listen := .Values.config.listen | default dict -}}
{{- $listen.port | default 8080 | int -}}
{{- end -}}

{{- define "siemgate.forwardPort" -}}
{{- $forward := .Values.config.forward | default dict -}}
{{- $listen := $forward.listen | default dict -}}
{{- $listen.port | default 9108 | int -}}
{{- end -}}

{{- define "siemgate.scheme" -}}
{{- $listen := .Values.config.listen | default dict -}}
{{- if $listen.tls -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{- define "siemgate.drainSeconds" -}}
{{- $forward := .Values.config.forward | default dict -}}
{{- $drain := 20 -}}
{{- if hasKey $forward "drain_timeout_seconds" -}}{{- $drain = $forward.drain_timeout_seconds -}}{{- end -}}
{{- $drain | ceil | int -}}
{{- end -}}

{{/*
The siemgate config shared by every workload: the user's `config` with the keys the chart owns
(the listeners' host, every path under /data, the Kafka TLS files). Returns YAML.
*/}}
{{- define "siemgate.baseConfig" -}}
{{- $c := deepCopy (.Values.config | default dict) -}}
{{- $listen := deepCopy ($c.listen | default dict) -}}
{{- $_ := set $listen "host" "0.0.0.0" -}}
{{- $_ := set $c "listen" $listen -}}
{{- $_ := set $c "state_dir" "/data/state" -}}
{{- $quarantine := deepCopy ($c.quarantine | default dict) -}}
{{- $_ := set $quarantine "path" "/data/quarantine" -}}
{{- $_ := set $c "quarantine" $quarantine -}}
{{- $bus := deepCopy ($c.bus | default dict) -}}
{{- if eq (include "siemgate.mode" .) "kafka" -}}
{{- $kafka := deepCopy ($bus.kafka | default dict) -}}
{{- if .Values.kafkaTls.secretName -}}
{{- $security := deepCopy ($kafka.security | default dict) -}}
{{- $dir := "/etc/siemgate/kafka-tls" -}}
{{- if .Values.kafkaTls.caKey -}}{{- $_ := set $security "ca_file" (printf "%s/%s" $dir .Values.kafkaTls.caKey) -}}{{- end -}}
{{- if .Values.kafkaTls.certKey -}}{{- $_ := set $security "cert_file" (printf "%s/%s" $dir .Values.kafkaTls.certKey) -}}{{- end -}}
{{- if .Values.kafkaTls.keyKey -}}{{- $_ := set $security "key_file" (printf "%s/%s" $dir .Values.kafkaTls.keyKey) -}}{{- end -}}
{{- $_ := set $kafka "security" $security -}}
{{- end -}}
{{- $spool := deepCopy ($bus.spool | default dict) -}}
{{- $_ := set $spool "path" "/data/spool" -}}
{{- $bus = dict "type" "kafka" "kafka" $kafka "spool" $spool -}}
{{- else -}}
{{- $bus = dict "type" "embedded" "path" "/data/siemgate.db" -}}
{{- end -}}
{{- $_ := set $c "bus" $bus -}}
{{- $forward := deepCopy ($c.forward | default dict) -}}
{{- $forwardListen := deepCopy ($forward.listen | default dict) -}}
{{- $_ := set $forwardListen "host" "0.0.0.0" -}}
{{- $_ := set $forward "listen" $forwardListen -}}
{{- $_ := set $c "forward" $forward -}}
{{- if .Values.admin.enabled -}}
{{- $_ := set $c "admin" (dict "host" "0.0.0.0" "port" (.Values.admin.port | int) "token" (printf "${%s}" .Values.admin.tokenKey)) -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* The status page's Service. */}}
{{- define "siemgate.adminName" -}}
{{- printf "%s-admin" (include "siemgate.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{/* The admin listener's container port (siemgate containers), when enabled. */}}
{{- define "siemgate.adminContainerPort" -}}
{{- if .Values.admin.enabled }}
- name: admin
  containerPort: {{ .Values.admin.port | int }}
  protocol: TCP
{{- end -}}
{{- end -}}

{{/* Fails the render when the admin listener would share a port with another listener. */}}
{{- define "siemgate.checkAdmin" -}}
{{- if .Values.admin.enabled -}}
{{- $port := .Values.admin.port | int -}}
{{- if eq $port (include "siemgate.listenPort" . | int) -}}
{{- fail (printf "admin.port %d is the webhook port (config.listen.port): the status page needs a port of its own" $port) -}}
{{- end -}}
{{- if eq $port (include "siemgate.forwardPort" . | int) -}}
{{- fail (printf "admin.port %d is config.forward.listen.port: the status page needs a port of its own" $port) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A sink as the config has it: dict "root" $ "sink" ENTRY. */}}
{{- define "siemgate.sinkConfig" -}}
{{- $entry := deepCopy (.sink.config | default dict) -}}
{{- $_ := set $entry "name" .sink.name -}}
{{- $_ := set $entry "type" .sink.type -}}
{{- toYaml $entry -}}
{{- end -}}

{{/* `siemgate run` (embedded): everything, every sink. */}}
{{- define "siemgate.runConfig" -}}
{{- $c := include "siemgate.baseConfig" . | fromYaml -}}
{{- $sinks := list -}}
{{- range .Values.sinks -}}
{{- $sinks = append $sinks (include "siemgate.sinkConfig" (dict "root" $ "sink" .) | fromYaml) -}}
{{- end -}}
{{- $_ := set $c "sinks" $sinks -}}
{{- toYaml $c -}}
{{- end -}}

{{/* `siemgate ingest`: no sinks (so none of their secrets). */}}
{{- define "siemgate.ingestConfig" -}}
{{- $c := include "siemgate.baseConfig" . | fromYaml -}}
{{- toYaml $c -}}
{{- end -}}

{{/* `siemgate forward --sink NAME`: that sink only, no integrations (so none of their keys). */}}
{{- define "siemgate.forwardConfig" -}}
{{- $c := include "siemgate.baseConfig" .root | fromYaml -}}
{{- $c = omit $c "integrations" -}}
{{- $_ := set $c "sinks" (list (include "siemgate.sinkConfig" (dict "root" .root "sink" .sink) | fromYaml)) -}}
{{- toYaml $c -}}
{{- end -}}

{{/*
The environment a workload's config needs: every ${VAR} it uses, from the Secret (optional
when the config gives a default), unless extraEnv sets it. dict "root" $ "config" TEXT
"extraEnv" LIST. With the chart's own Secret, a variable without default that it lacks fails
the render, naming the variable.
*/}}
{{- define "siemgate.secretEnv" -}}
{{- $root := .root -}}
{{- $plain := list -}}
{{- range .extraEnv -}}{{- $plain = append $plain .name -}}{{- end -}}
{{- $text := replace "$$" "" .config -}}
{{- $required := dict -}}
{{- range regexFindAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-)?" $text -1 -}}
{{- $name := regexReplaceAll "^\\$\\{([A-Za-z_][A-Za-z0-9_]*).*$" . "${1}" -}}
{{- $optional := hasSuffix ":-" . -}}
{{- if not (hasKey $required $name) -}}
{{- $_ := set $required $name (not $optional) -}}
{{- else if not $optional -}}
{{- $_ := set $required $name true -}}
{{- end -}}
{{- end -}}
{{- $own := not $root.Values.secrets.existingSecret -}}
{{- $values := $root.Values.secrets.values | default dict -}}
{{- range $name := keys $required | sortAlpha -}}
{{- if not (has $name $plain) -}}
{{- $needed := get $required $name -}}
{{- if and $own (not (hasKey $values $name)) -}}
{{- if $needed -}}
{{- fail (printf "the siemgate config uses ${%s}: set secrets.values.%s, or secrets.existingSecret with a key %s (or give it a default: ${%s:-...})" $name $name $name $name) -}}
{{- end -}}
{{- else }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "siemgate.secretName" $root }}
      key: {{ $name }}
      {{- if not $needed }}
      optional: true
      {{- end }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Spread constraints with the workload's selector filled in: dict "constraints" LIST "labels" DICT "deployment" BOOL. */}}
{{- define "siemgate.topologySpread" -}}
{{- $out := list -}}
{{- range .constraints -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "labelSelector") -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $.labels) -}}
{{- end -}}
{{- if and $.deployment (not (hasKey $c "matchLabelKeys")) -}}
{{- $_ := set $c "matchLabelKeys" (list "pod-template-hash") -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- if $out -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}

{{/* A forwarder's settings: the `forwarder` defaults with the sink entry's own on top. dict "root" $ "sink" ENTRY. */}}
{{- define "siemgate.forwarderValues" -}}
{{- $defaults := deepCopy .root.Values.forwarder -}}
{{- $own := deepCopy (omit .sink "name" "type" "config") -}}
{{- toYaml (mergeOverwrite $defaults $own) -}}
{{- end -}}

{{/*
The ports a sink connects to: dict "sink" ENTRY. A YAML list of {port, protocol}, read from the
config key holding the sink's destination URL, with its scheme's default port when the URL gives
none (both per sink type in `siemgate.sinkTypes`, generated from the sink modules); empty when the
destination is a ${VAR} or the sink type connects nowhere.
*/}}
{{- define "siemgate.sinkPorts" -}}
{{- $type := get (include "siemgate.sinkTypes" . | fromJson) .sink.type | default dict -}}
{{- $config := .sink.config | default dict -}}
{{- $target := "" -}}
{{- if $type.destination -}}{{- $target = get $config $type.destination | default "" | toString -}}{{- end -}}
{{- if and $target (not (contains "${" $target)) -}}
{{- $u := urlParse $target -}}
{{- $scheme := get ($type.ports | default dict) $u.scheme | default dict -}}
{{- $port := "" -}}
{{- if regexMatch ":[0-9]+$" $u.host -}}
{{- $port = regexFind "[0-9]+$" $u.host -}}
{{- else if $scheme.port -}}
{{- $port = $scheme.port | toString -}}
{{- end -}}
{{- if $port }}
- port: {{ $port | int }}
  protocol: {{ $scheme.protocol | default "TCP" }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The container security context and the common volumes. */}}
{{- define "siemgate.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* The NetworkPolicy ingress rule of the admin port: admin.allowedFrom only (none when empty:
an empty `from` would mean everyone). */}}
{{- define "siemgate.adminIngress" -}}
{{- if and .Values.admin.enabled .Values.admin.allowedFrom }}
# The status page: admin.allowedFrom only.
- ports:
    - {port: admin, protocol: TCP}
  from:
    {{- toYaml .Values.admin.allowedFrom | nindent 4 }}
{{- end -}}
{{- end -}}
