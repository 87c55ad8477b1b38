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

{{/*
The ingest's workload (and Services, PDB, HPA ...). A StatefulSet's name is at most 52
characters: its pods carry the label controller-revision-hash=<name>-<10-character hash>, and a
label value is at most 63, so a longer name is accepted by the API but its pods are never
created. The Deployment shapes (existingClaim, emptyDir) keep up to 63 (their names stay as they
were: renaming a Deployment on an existing claim would start the new pod before the old stops).
*/}}
{{- define "siemgate.ingestName" -}}
{{- $p := .Values.ingest.persistence -}}
{{- $keep := ternary 45 56 (and $p.enabled (not $p.existingClaim)) -}}
{{- printf "%s-ingest" (include "siemgate.fullname" . | trunc $keep | trimSuffix "-") -}}
{{- end -}}

{{/* A sink's forwarder: dict "root" $ "sink" NAME. Past 63 characters, cut and made unique by
a hash of the sink's name (two long sink names must not cut to one Deployment). */}}
{{- define "siemgate.forwarderName" -}}
{{- $name := printf "%s-fwd-%s" (include "siemgate.fullname" .root | trunc 30 | trimSuffix "-") .sink -}}
{{- if gt (len $name) 63 -}}
{{- $name = printf "%s-%s" ($name | trunc 54 | trimSuffix "-") (.sink | sha256sum | trunc 8) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* The ConfigMap of the workloads' configs. */}}
{{- define "siemgate.configMapName" -}}
{{- printf "%s-config" (include "siemgate.fullname" . | trunc 56 | trimSuffix "-") -}}
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

{{/*
Kafka's TLS files, by role: a YAML map ca|cert|key -> {secret, key} (empty: no TLS files). Each
role's Secret: kafkaTls.caSecretName (CA) or kafkaTls.clientSecretName (certificate and key),
else kafkaTls.secretName: Strimzi keeps the cluster CA (`<cluster>-cluster-ca-cert`, ca.crt)
and the KafkaUser's certificate (user.crt, user.key) in two Secrets.
*/}}
{{- define "siemgate.kafkaTlsFiles" -}}
{{- $t := .Values.kafkaTls -}}
{{- $files := dict -}}
{{- range $role, $spec := dict "ca" (list ($t.caSecretName | default $t.secretName) $t.caKey) "cert" (list ($t.clientSecretName | default $t.secretName) $t.certKey) "key" (list ($t.clientSecretName | default $t.secretName) $t.keyKey) -}}
{{- if and (index $spec 0) (index $spec 1) -}}
{{- $_ := set $files $role (dict "secret" (index $spec 0) "key" (index $spec 1)) -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $files "cert") (not (hasKey $files "key")) -}}{{- fail "kafkaTls: certKey without keyKey (the client certificate needs its key)" -}}{{- end -}}
{{- if and (hasKey $files "key") (not (hasKey $files "cert")) -}}{{- fail "kafkaTls: keyKey without certKey (the client key needs its certificate)" -}}{{- end -}}
{{- $paths := list -}}
{{- range $files }}{{ $paths = append $paths .key }}{{ end -}}
{{- if ne (len $paths) (len ($paths | uniq)) -}}
{{- fail (printf "kafkaTls: the keys %s would be mounted on the same file; the CA and the client certificate and key need distinct key names" (join ", " $paths)) -}}
{{- end -}}
{{- toYaml $files -}}
{{- end -}}

{{/* The kafka-tls volume (a projected volume over the Secrets kafkaTlsFiles names), or nothing. */}}
{{- define "siemgate.kafkaTlsVolume" -}}
{{- $files := include "siemgate.kafkaTlsFiles" . | fromYaml -}}
{{- if $files }}
- name: kafka-tls
  projected:
    sources:
      {{- $bySecret := dict }}
      {{- range $role := list "ca" "cert" "key" }}
      {{- with get $files $role }}
      {{- $_ := set $bySecret .secret (append (get $bySecret .secret | default list) .key) }}
      {{- end }}
      {{- end }}
      {{- range $secret, $keys := $bySecret }}
      - secret:
          name: {{ $secret }}
          items:
            {{- range $keys }}
            - {key: {{ . | quote }}, path: {{ . | quote }}}
            {{- end }}
      {{- end }}
{{- end -}}
{{- end -}}

{{/* The ingest's metrics port (config.metrics.port), or "" when /metrics is on the webhook port. */}}
{{- define "siemgate.metricsPort" -}}
{{- with .Values.config.metrics -}}{{- .port | default 9109 | int -}}{{- end -}}
{{- end -}}

{{/* The ingest's scrape job (the Service the ServiceMonitor selects): its metrics Service, or the webhook Service. */}}
{{- define "siemgate.ingestMetricsJob" -}}
{{- if include "siemgate.metricsPort" . -}}
{{- printf "%s-metrics" (include "siemgate.ingestName" . | trunc 55 | trimSuffix "-") -}}
{{- else -}}
{{- include "siemgate.ingestName" . -}}
{{- end -}}
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
{{- if $c.metrics -}}
{{- $_ := set $c "metrics" (dict "host" "0.0.0.0" "port" (include "siemgate.metricsPort" . | int)) -}}
{{- else -}}
{{- $c = omit $c "metrics" -}}
{{- end -}}
{{- $_ := set $c "state_dir" "/data/state" -}}
{{- $quarantine := deepCopy ($c.quarantine | default dict) -}}
{{- $_ := set $quarantine "path" "/data/quarantine" -}}
{{- $_ := set $c "quarantine" $quarantine -}}
{{- $bus := deepCopy ($c.bus | default dict) -}}
{{- if eq (include "siemgate.mode" .) "kafka" -}}
{{- $kafka := deepCopy ($bus.kafka | default dict) -}}
{{- $tlsFiles := include "siemgate.kafkaTlsFiles" . | fromYaml -}}
{{- if $tlsFiles -}}
{{- $security := deepCopy ($kafka.security | default dict) -}}
{{- $dir := "/etc/siemgate/kafka-tls" -}}
{{- with $tlsFiles.ca -}}{{- $_ := set $security "ca_file" (printf "%s/%s" $dir .key) -}}{{- end -}}
{{- with $tlsFiles.cert -}}{{- $_ := set $security "cert_file" (printf "%s/%s" $dir .key) -}}{{- end -}}
{{- with $tlsFiles.key -}}{{- $_ := set $security "key_file" (printf "%s/%s" $dir .key) -}}{{- end -}}
{{- $_ := set $kafka "security" $security -}}
{{- end -}}
{{- $spool := deepCopy ($bus.spool | default dict) -}}
{{- $_ := set $spool "path" "/data/spool" -}}
{{- $bus = dict "type" "kafka" "kafka" $kafka "spool" $spool -}}
{{- else -}}
{{- $embedded := dict "type" "embedded" "path" "/data/siemgate.db" -}}
{{- if hasKey $bus "max_bytes" -}}{{- $_ := set $embedded "max_bytes" $bus.max_bytes -}}{{- end -}}
{{- $bus = $embedded -}}
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
{{- $metrics := include "siemgate.metricsPort" . -}}
{{- if and $metrics (eq ($metrics | int) (include "siemgate.listenPort" . | int)) -}}
{{- fail (printf "config.metrics.port %s is the webhook port (config.listen.port): give /metrics a port of its own, or set config.metrics to null" $metrics) -}}
{{- end -}}
{{- if and $metrics .Values.admin.enabled (eq ($metrics | int) (.Values.admin.port | int)) -}}
{{- fail (printf "config.metrics.port %s is admin.port: give /metrics a port of its own" $metrics) -}}
{{- end -}}
{{- end -}}

{{/* A sink as the config has it: dict "root" $ "sink" ENTRY. */}}
{{- define "siemgate.sinkConfig" -}}
{{- $entry := deepCopy (.sink.config | default dict) -}}
{{- $_ := set $entry "name" .sink.name -}}
{{- $_ := set $entry "type" .sink.type -}}
{{- toYaml $entry -}}
{{- end -}}

{{/*
config.limits.memory_budget_bytes of the ingest's config (dict "root" $ "config" C, set in C),
unless given there: ingest.memoryBudgetPercent of the ingest container's memory limit. Fails
when that is less than one gzip'd body of max_body_bytes takes (7 x max_body_bytes: siemgate's
BODY_BYTE_COST + 1; siemgate would refuse the config at start).
*/}}
{{- define "siemgate.setMemoryBudget" -}}
{{- $c := .config -}}
{{- $v := .root.Values.ingest -}}
{{- $limits := deepCopy ($c.limits | default dict) -}}
{{- $memory := dig "limits" "memory" "" ($v.resources | default dict) -}}
{{- if and $memory (not (hasKey $limits "memory_budget_bytes")) -}}
{{- $memoryBytes := include "siemgate.bytes" $memory | int64 -}}
{{- $budget := div (mul $memoryBytes ($v.memoryBudgetPercent | int64)) 100 -}}
{{- $maxBody := 33554432 -}}
{{- if hasKey $limits "max_body_bytes" -}}{{- $maxBody = $limits.max_body_bytes -}}{{- end -}}
{{- if not (kindIs "string" $maxBody) -}}
{{- $needed := mul 7 ($maxBody | int64) -}}
{{- if lt $budget $needed -}}
{{- fail (printf "ingest.memoryBudgetPercent %d%% of ingest.resources.limits.memory %s is %s: less than one gzip'd body of config.limits.max_body_bytes (%d) takes in memory (7 x max_body_bytes = %s). Raise the memory limit (or memoryBudgetPercent), or lower max_body_bytes" ($v.memoryBudgetPercent | int64) (toString $memory) (include "siemgate.ceilMi" $budget) ($maxBody | int64) (include "siemgate.ceilMi" $needed)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $limits "memory_budget_bytes" $budget -}}
{{- $_ := set $c "limits" $limits -}}
{{- end -}}
{{- end -}}

{{/* `siemgate run` (embedded): everything, every sink. */}}
{{- define "siemgate.runConfig" -}}
{{- $c := include "siemgate.baseConfig" . | fromYaml -}}
{{- include "siemgate.setMemoryBudget" (dict "root" . "config" $c) -}}
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
{{- include "siemgate.setMemoryBudget" (dict "root" . "config" $c) -}}
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
The Secret's keys a workload's config uses: every ${VAR} of it that extraEnv does not set.
dict "root" $ "config" TEXT "extraEnv" LIST. Returns YAML {required: [..], optional: [..]}
(optional: the config gives a default). With the chart's own Secret, a required key it lacks
fails the render, naming it; an optional one it lacks is left out (the default applies).
*/}}
{{- define "siemgate.secretKeys" -}}
{{- $root := .root -}}
{{- $plain := list -}}
{{- range .extraEnv -}}{{- $plain = append $plain .name -}}{{- end -}}
{{- $text := replace "$$" "" .config -}}
{{- $found := dict -}}
{{- range regexFindAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-|\\})" $text -1 -}}
{{- $name := regexReplaceAll "^\\$\\{([A-Za-z_][A-Za-z0-9_]*).*$" . "${1}" -}}
{{- $optional := hasSuffix ":-" . -}}
{{- if not (hasKey $found $name) -}}
{{- $_ := set $found $name (not $optional) -}}
{{- else if not $optional -}}
{{- $_ := set $found $name true -}}
{{- end -}}
{{- end -}}
{{- $own := not $root.Values.secrets.existingSecret -}}
{{- $values := $root.Values.secrets.values | default dict -}}
{{- $required := list -}}
{{- $optionalKeys := list -}}
{{- range $name := keys $found | sortAlpha -}}
{{- if not (has $name $plain) -}}
{{- $needed := get $found $name -}}
{{- if and $own (not (hasKey $values $name)) -}}
{{- if $needed -}}
{{- fail (printf "the siemgate config uses ${%s}: set secrets.values.%s, or secrets.existingSecret with a key %s (or give it a default: ${%s:-...})" $name $name $name $name) -}}
{{- end -}}
{{- else if $needed -}}
{{- $required = append $required $name -}}
{{- else -}}
{{- $optionalKeys = append $optionalKeys $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "required" $required "optional" $optionalKeys) -}}
{{- end -}}

{{/*
The variables a workload's pod environment sets, whose ${VAR}s stay environment variables (never
Secret files): extraEnv's names, injectedEnv's (set by a mutating admission webhook the chart does
not see: Vault's agent, a cloud's identity webhook) and, on pods labelled
azure.workload.identity/use: "true", the variables Azure Workload Identity's webhook injects.
The workload's values (ingest, or a forwarder's). A YAML list of {name: VAR}.
*/}}
{{- define "siemgate.podEnv" -}}
{{- $names := list -}}
{{- range .extraEnv -}}{{- $names = append $names .name -}}{{- end -}}
{{- range .injectedEnv -}}{{- $names = append $names . -}}{{- end -}}
{{- if eq (get (.podLabels | default dict) "azure.workload.identity/use" | toString) "true" -}}
{{- $names = concat $names (list "AZURE_CLIENT_ID" "AZURE_TENANT_ID" "AZURE_FEDERATED_TOKEN_FILE" "AZURE_AUTHORITY_HOST") -}}
{{- end -}}
{{- $out := list -}}
{{- range $names | uniq -}}{{- $out = append $out (dict "name" .) -}}{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Where the Secret's keys are mounted, one file each (read as ${file:...}). */}}
{{- define "siemgate.secretsDir" -}}/etc/siemgate-secrets{{- end -}}

{{/*
A workload's config as mounted: each ${VAR} that extraEnv does not set becomes
${file:<secretsDir>/VAR} (defaults kept), so a rotated Secret reaches the running process by
hot reload, never through the environment. dict "root" $ "config" TEXT "extraEnv" LIST.
*/}}
{{- define "siemgate.fileConfig" -}}
{{- $plain := list -}}
{{- range .extraEnv -}}{{- $plain = append $plain .name -}}{{- end -}}
{{- $dir := include "siemgate.secretsDir" .root -}}
{{- $text := replace "$$" "\x00" .config -}}
{{- $names := list -}}
{{- range regexFindAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-|\\})" $text -1 -}}
{{- $names = append $names (regexReplaceAll "^\\$\\{([A-Za-z_][A-Za-z0-9_]*).*$" . "${1}") -}}
{{- end -}}
{{- range $name := $names | uniq -}}
{{- if not (has $name $plain) -}}
{{- $text = regexReplaceAll (printf "\\$\\{%s(:-[^}]*)?\\}" $name) $text (printf "$${file:%s/%s${1}}" $dir $name) -}}
{{- end -}}
{{- end -}}
{{- replace "\x00" "$$" $text -}}
{{- end -}}

{{/* The projected volume of the Secret's keys a workload uses: dict "root" $ "config" TEXT "extraEnv" LIST (the config before fileConfig). Empty when it uses none. */}}
{{- define "siemgate.secretVolume" -}}
{{- $keys := include "siemgate.secretKeys" . | fromYaml -}}
{{- $name := include "siemgate.secretName" .root -}}
{{- if or $keys.required $keys.optional }}
- name: secrets
  projected:
    # Read by the group only (fsGroup); one file per key, updated in place on rotation.
    defaultMode: {{ ternary 288 292 (hasKey .root.Values.podSecurityContext "fsGroup") }}
    sources:
      {{- with $keys.required }}
      - secret:
          name: {{ $name }}
          items:
            {{- range . }}
            - {key: {{ . }}, path: {{ . }}}
            {{- end }}
      {{- end }}
      {{- with $keys.optional }}
      # Keys the config gives a default for: the pod starts without them.
      - secret:
          name: {{ $name }}
          optional: true
          items:
            {{- range . }}
            - {key: {{ . }}, path: {{ . }}}
            {{- end }}
      {{- end }}
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

{{/* "true" when a sink is a file sink writing on its forwarder's /data emptyDir (no
extraVolumeMount of the forwarder holds its path), else "". dict "sink" ENTRY "fw" FORWARDER-VALUES. */}}
{{- define "siemgate.fileSinkOnEmptyDir" -}}
{{- if eq .sink.type "file" -}}
{{- $path := ((.sink.config | default dict).path | default "") | toString -}}
{{- $kept := false -}}
{{- range .fw.extraVolumeMounts -}}
{{- if hasPrefix (printf "%s/" (trimSuffix "/" .mountPath)) $path -}}{{- $kept = true -}}{{- end -}}
{{- end -}}
{{- if not $kept -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when the ingest's NetworkPolicy opens https (443) for confirmation links
(networkPolicy.ingest.confirmationEgress: auto opens it for an integration with
confirmation.mode auto, or for the status page's Confirm button), else "". */}}
{{- define "siemgate.confirmationEgress" -}}
{{- $confirm := .Values.networkPolicy.ingest.confirmationEgress -}}
{{- if eq (toString $confirm) "auto" -}}
{{- $confirm = .Values.admin.enabled -}}
{{- range .Values.config.integrations -}}
{{- if eq ((.confirmation | default dict).mode | default "manual") "auto" -}}{{- $confirm = true -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if $confirm -}}true{{- end -}}
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

{{/* --- Volumes, caps and shutdown: what the ingest may write, and how long it may take to stop. --- */}}

{{/* A Kubernetes quantity of bytes (16Gi, 500M, 1.5Ti, or a number) as an integer. */}}
{{- define "siemgate.bytes" -}}
{{- $q := . -}}
{{- if or (kindIs "float64" $q) (kindIs "int" $q) (kindIs "int64" $q) -}}
{{- $q | int64 -}}
{{- else -}}
{{- $s := toString $q -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $s -}}
{{- $unit := trimPrefix $number $s -}}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "%q is not a quantity of bytes (e.g. 16Gi, 500M, 1.5Ti)" $s) -}}
{{- end -}}
{{- mulf ($number | float64) (get $units $unit) | ceil | int64 -}}
{{- end -}}
{{- end -}}

{{/* Bytes as GiB for messages (two decimals). */}}
{{- define "siemgate.gib" -}}
{{- printf "%.2fGi" (divf (. | float64) 1073741824.0) -}}
{{- end -}}

{{/* Bytes rounded up to whole GiB, as a quantity. */}}
{{- define "siemgate.ceilGi" -}}
{{- printf "%dGi" (divf (. | float64) 1073741824.0 | ceil | int64) -}}
{{- end -}}

{{/* Bytes rounded up to whole MiB, as a quantity. */}}
{{- define "siemgate.ceilMi" -}}
{{- printf "%dMi" (divf (. | float64) 1048576.0 | ceil | int64) -}}
{{- end -}}

{{/* A number of seconds from the config (default when unset), rounded up. dict "value" V "default" N. */}}
{{- define "siemgate.seconds" -}}
{{- $v := .value -}}
{{- if kindIs "invalid" $v -}}{{- $v = .default -}}{{- end -}}
{{- $v | float64 | ceil | int64 -}}
{{- end -}}

{{/* The bytes file sinks may keep: each rotates at rotate_bytes and keeps `keep` old files
(siemgate's defaults: 100 MiB, 10). dict "sinks" LIST. */}}
{{- define "siemgate.fileSinkBytes" -}}
{{- $total := 0 | int64 -}}
{{- range .sinks -}}
{{- if eq .type "file" -}}
{{- $c := .config | default dict -}}
{{- $rotate := $c.rotate_bytes | default 104857600 | int64 -}}
{{- $keep := $c.keep | default 10 | int64 -}}
{{- if hasKey $c "keep" -}}{{- $keep = $c.keep | int64 -}}{{- end -}}
{{- $total = add $total (mul $rotate (add $keep 1)) -}}
{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
The ingest's shape, checked: how /data is kept, how many replicas, what /data must hold, the
grace period. Fails, saying what to set, on any combination that can delete an acknowledged
event with a pod, or that is too small for the caps siemgate keeps to. Returns YAML:
  kind        StatefulSet | Deployment
  storage     claimTemplate | existingClaim | emptyDir
  hpa         bool;  replicas (when no HPA)
  needBytes   what siemgate may write to /data (caps + headroom); volumeBytes
  grace, preStop, ephemeralBytes
*/}}
{{- define "siemgate.ingestPlan" -}}
{{- $mode := include "siemgate.mode" . -}}
{{- $v := .Values.ingest -}}
{{- $p := $v.persistence -}}
{{- $c := .Values.config | default dict -}}
{{- $bus := $c.bus | default dict -}}
{{- $spool := $bus.spool | default dict -}}
{{- $quarantine := $c.quarantine | default dict -}}
{{- $limits := $c.limits | default dict -}}
{{- $forward := $c.forward | default dict -}}
{{- $plan := dict -}}
{{- /* Replicas and autoscaling. */ -}}
{{- $hpa := false -}}
{{- $replicas := 1 -}}
{{- if eq $mode "embedded" -}}
{{- if $v.autoscaling.enabled -}}
{{- fail "ingest.autoscaling.enabled: the embedded bus is one process (`siemgate run`) and cannot be autoscaled: set ingest.autoscaling.enabled=false (or leave it unset), or config.bus.type=kafka to scale the ingest" -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $v.replicas)) (ne ($v.replicas | int) 1) -}}
{{- fail (printf "ingest.replicas=%v: the embedded bus is one process (`siemgate run`), exactly one replica: set ingest.replicas=1 (or leave it unset), or config.bus.type=kafka for more" $v.replicas) -}}
{{- end -}}
{{- else -}}
{{- $hpa = kindIs "invalid" $v.autoscaling.enabled | ternary true $v.autoscaling.enabled -}}
{{- $replicas = kindIs "invalid" $v.replicas | ternary 2 $v.replicas | int -}}
{{- if $hpa -}}
{{- if not (kindIs "invalid" $v.replicas) -}}
{{- fail (printf "ingest.replicas=%v is set, but the ingest is autoscaled (ingest.autoscaling.enabled, on by default with Kafka), whose HPA decides the replicas: set ingest.autoscaling.enabled=false to run exactly ingest.replicas, or leave ingest.replicas unset and bound the HPA with ingest.autoscaling.minReplicas/maxReplicas" $v.replicas) -}}
{{- end -}}
{{- if gt ($v.autoscaling.minReplicas | int) ($v.autoscaling.maxReplicas | int) -}}
{{- fail (printf "ingest.autoscaling.minReplicas %d is above ingest.autoscaling.maxReplicas %d: the API server refuses the HPA" ($v.autoscaling.minReplicas | int) ($v.autoscaling.maxReplicas | int)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Where /data lives. */ -}}
{{- $what := ternary "the embedded log (every event not forwarded yet) and the confirmation state" "the spool (batches answered 200 while Kafka was late or away)" (eq $mode "embedded") -}}
{{- $storage := "claimTemplate" -}}
{{- if not $p.enabled -}}
{{- if $p.existingClaim -}}
{{- fail "ingest.persistence.existingClaim is set but ingest.persistence.enabled=false: set ingest.persistence.enabled=true to use the claim" -}}
{{- end -}}
{{- if not $p.acceptDataLossOnPodDeletion -}}
{{- fail (printf "ingest.persistence.enabled=false puts /data, which holds %s, on an emptyDir that is deleted with the pod (rollout, node drain, eviction): acknowledged events would be lost. Keep ingest.persistence.enabled=true (a StatefulSet, one PersistentVolumeClaim per replica) or set ingest.persistence.existingClaim; for a throw-away demo only, set ingest.persistence.acceptDataLossOnPodDeletion=true" $what) -}}
{{- end -}}
{{- if $hpa -}}
{{- fail "ingest.autoscaling.enabled over emptyDir spools: every scale-down deletes a pod and what its spool holds. Set ingest.persistence.enabled=true (the HPA then scales a StatefulSet whose claims are kept), or ingest.autoscaling.enabled=false with ingest.replicas=1" -}}
{{- end -}}
{{- if gt ($replicas | int) 1 -}}
{{- fail (printf "ingest.replicas=%d over emptyDir spools: scaling down deletes pods and what their spools hold. Set ingest.persistence.enabled=true (a StatefulSet whose claims are kept), or ingest.replicas=1" ($replicas | int)) -}}
{{- end -}}
{{- $storage = "emptyDir" -}}
{{- else if $p.existingClaim -}}
{{- if or $hpa (gt ($replicas | int) 1) -}}
{{- fail "ingest.persistence.existingClaim is one volume for one replica (a second process on a spool is refused): set ingest.autoscaling.enabled=false and ingest.replicas=1, or leave existingClaim empty for a claim per replica" -}}
{{- end -}}
{{- $storage = "existingClaim" -}}
{{- else -}}
{{- $retention := $p.retentionPolicy | default dict -}}
{{- range $when := list "whenDeleted" "whenScaled" -}}
{{- if eq (get $retention $when | default "Retain") "Delete" -}}
{{- fail (printf "ingest.persistence.retentionPolicy.%s=Delete deletes a claim that may still hold %s: set it to Retain (drain a claim left behind with spoolDrainJob, then delete it yourself)" $when $what) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* What /data must hold: the caps siemgate keeps to, plus headroom (SQLite pages, WAL, segments being removed). */ -}}
{{- $cap := 0 | int64 -}}
{{- $capName := "" -}}
{{- if eq $mode "embedded" -}}
{{- $cap = $bus.max_bytes | default 10737418240 | int64 -}}
{{- $capName = "config.bus.max_bytes" -}}
{{- else -}}
{{- $cap = $spool.max_bytes | default 10737418240 | int64 -}}
{{- $capName = "config.bus.spool.max_bytes" -}}
{{- end -}}
{{- $quarantineBytes := 268435456 | int64 -}}
{{- if hasKey $quarantine "max_bytes" -}}{{- $quarantineBytes = $quarantine.max_bytes | int64 -}}{{- end -}}
{{- $files := 0 | int64 -}}
{{- if eq $mode "embedded" -}}{{- $files = include "siemgate.fileSinkBytes" (dict "sinks" .Values.sinks) | int64 -}}{{- end -}}
{{- /* The spool's cap counts logical bytes (keys, values, headers); its SQLite file takes more
    (pages, row overhead: 1.10x measured when full, tests/lifecycle/test_eviction_lifecycle.py). */ -}}
{{- $overhead := 0 | int64 -}}
{{- if ne $mode "embedded" -}}{{- $overhead = div (mul $cap ($p.spoolFileOverheadPercent | default 25 | int64)) 100 -}}{{- end -}}
{{- $caps := add $cap $quarantineBytes $files $overhead -}}
{{- $headroom := div (mul $caps ($p.headroomPercent | int64)) 100 -}}
{{- $minHeadroom := include "siemgate.bytes" $p.minHeadroom | int64 -}}
{{- if lt $headroom $minHeadroom -}}{{- $headroom = $minHeadroom -}}{{- end -}}
{{- $need := add $caps $headroom -}}
{{- $sizeKey := ternary "ingest.persistence.emptyDir.sizeLimit" "ingest.persistence.size" (eq $storage "emptyDir") -}}
{{- $size := ternary $p.emptyDir.sizeLimit $p.size (eq $storage "emptyDir") -}}
{{- $volume := include "siemgate.bytes" $size | int64 -}}
{{- if lt $volume $need -}}
{{- $filesText := ternary (printf " + file sinks %s" (include "siemgate.gib" $files)) "" (gt $files 0) -}}
{{- $filesText = printf "%s%s" $filesText (ternary (printf " + the spool file's overhead %s (ingest.persistence.spoolFileOverheadPercent)" (include "siemgate.gib" $overhead)) "" (gt $overhead 0)) -}}
{{- fail (printf "%s=%v is smaller than what siemgate may keep on /data: %s %s + config.quarantine.max_bytes %s%s + headroom %s (%d%%, at least ingest.persistence.minHeadroom) = %s. Set %s to at least %s, or lower the caps in config" $sizeKey $size $capName (include "siemgate.gib" $cap) (include "siemgate.gib" $quarantineBytes) $filesText (include "siemgate.gib" $headroom) ($p.headroomPercent | int) (include "siemgate.gib" $need) $sizeKey (include "siemgate.ceilGi" $need)) -}}
{{- end -}}
{{- /* Ephemeral storage: container logs and /tmp, plus /data when it is an emptyDir. */ -}}
{{- $ephemeral := add (include "siemgate.bytes" $v.ephemeralStorageOverhead | int64) 67108864 -}}
{{- if eq $storage "emptyDir" -}}{{- $ephemeral = add $ephemeral $volume -}}{{- end -}}
{{- /* Shutdown: endpoints removed (preStop), requests in flight answered (the body timeout, uvicorn's
25 s at least), then the spool sent to Kafka (kafka) or the forwarders drained (embedded). */ -}}
{{- $preStop := $v.preStopSleepSeconds | int64 -}}
{{- $body := include "siemgate.seconds" (dict "value" $limits.body_timeout_seconds "default" 30) | int64 -}}
{{- if lt $body 25 -}}{{- $body = 25 -}}{{- end -}}
{{- $drain := 0 | int64 -}}
{{- $drainName := "" -}}
{{- if eq $mode "kafka" -}}
{{- $drain = include "siemgate.seconds" (dict "value" $spool.drain_timeout_seconds "default" 300) | int64 -}}
{{- $drainName = "config.bus.spool.drain_timeout_seconds" -}}
{{- else -}}
{{- $drain = add (include "siemgate.drainSeconds" . | int64) 5 -}}
{{- $drainName = "the forwarders' drain (config.forward.drain_timeout_seconds + 5)" -}}
{{- end -}}
{{- $minGrace := add $preStop $body $drain -}}
{{- $grace := $v.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $grace -}}
{{- $grace = add $minGrace ($v.terminationMarginSeconds | int64) -}}
{{- else if lt ($grace | int64) $minGrace -}}
{{- fail (printf "ingest.terminationGracePeriodSeconds=%v is shorter than siemgate's shutdown: preStop %ds + requests in flight %ds (config.limits.body_timeout_seconds, at least 25) + %s %ds = %ds; the kubelet would kill it with its spool unsent. Set it to at least %d, or leave it null (derived)" $grace $preStop $body $drainName $drain $minGrace $minGrace) -}}
{{- end -}}
{{- $_ := set $plan "kind" (ternary "StatefulSet" "Deployment" (eq $storage "claimTemplate")) -}}
{{- $_ := set $plan "storage" $storage -}}
{{- $_ := set $plan "hpa" $hpa -}}
{{- $_ := set $plan "replicas" ($replicas | int) -}}
{{- $_ := set $plan "needBytes" $need -}}
{{- $_ := set $plan "volumeBytes" $volume -}}
{{- $_ := set $plan "ephemeralBytes" $ephemeral -}}
{{- $_ := set $plan "grace" ($grace | int64) -}}
{{- $_ := set $plan "preStop" $preStop -}}
{{- toYaml $plan -}}
{{- end -}}

{{/*
Container resources with ephemeral-storage set to what the pod may write outside its claims
(requests = limits); a value given that is smaller fails. dict "resources" R "bytes" N "where" KEY.
*/}}
{{- define "siemgate.resources" -}}
{{- $r := deepCopy .resources -}}
{{- $requests := $r.requests | default dict -}}
{{- $limits := $r.limits | default dict -}}
{{- $need := .bytes | int64 -}}
{{- range $name, $part := dict "requests" $requests "limits" $limits -}}
{{- if hasKey $part "ephemeral-storage" -}}
{{- $given := include "siemgate.bytes" (get $part "ephemeral-storage") | int64 -}}
{{- if lt $given $need -}}
{{- fail (printf "%s.%s.ephemeral-storage=%v is smaller than what the pod writes outside its claims (/data when an emptyDir, /tmp, logs): %s. Remove it (the chart sets it) or set at least %s" $.where $name (get $part "ephemeral-storage") (include "siemgate.ceilMi" $need) (include "siemgate.ceilMi" $need)) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $part "ephemeral-storage" (include "siemgate.ceilMi" $need) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $r "requests" $requests -}}
{{- $_ := set $r "limits" $limits -}}
{{- toYaml $r -}}
{{- end -}}
