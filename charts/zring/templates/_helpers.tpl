{{/* Name of the DaemonSet, ServiceAccount and ResourceQuota: istiod trusts
"<namespace>/ztunnel" (CA_TRUSTED_NODE_ACCOUNTS) and istioctl looks for app=ztunnel. */}}
{{- define "ztunnel.release-name" -}}
{{ .Values.resourceName | default "ztunnel" }}
{{- end }}

{{/* Labels of every resource, as Istio's charts set them. */}}
{{- define "istio.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/part-of: "istio"
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Top-level metadata.labels: the common ones plus .Values.labels. */}}
{{- define "zring.labels" -}}
app.kubernetes.io/name: ztunnel
{{ include "istio.labels" . }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Top-level metadata.annotations: .Values.annotations, plus istio.io/rev. */}}
{{- define "zring.annotations" -}}
{{- $annos := deepCopy (.Values.annotations | default dict) }}
{{- if .Values.revision }}
{{- $_ := set $annos "istio.io/rev" .Values.revision }}
{{- end }}
{{- if $annos }}
{{- toYaml $annos }}
{{- end }}
{{- end }}

{{/* resourceScope: whether namespaced / cluster-scoped resources are rendered. */}}
{{- define "zring.namespaced" -}}
{{- if has (upper (.Values.resourceScope | default "ALL")) (list "ALL" "NAMESPACE") }}true{{ end }}
{{- end }}
{{- define "zring.clusterScoped" -}}
{{- if has (upper (.Values.resourceScope | default "ALL")) (list "ALL" "CLUSTER") }}true{{ end }}
{{- end }}

{{/* Image reference: hub/image:tag; `image` alone when it contains a "/". The
variant is ignored: zring has one image. */}}
{{- define "zring.image" -}}
{{- if contains "/" .Values.image -}}
{{ .Values.image }}
{{- else -}}
{{- $name := printf "%s:%s" (.Values.image | default "zring") (.Values.tag | default .Chart.AppVersion | toString) -}}
{{- if .Values.hub -}}
{{ printf "%s/%s" (trimSuffix "/" .Values.hub) $name }}
{{- else -}}
{{ $name }}
{{- end -}}
{{- end -}}
{{- end }}

{{/* istiod's address for CA and xDS when caAddress / xdsAddress are empty. */}}
{{- define "zring.istiodAddress" -}}
istiod{{ with .Values.revision }}-{{ . }}{{ end }}.{{ .Values.istioNamespace | default "istio-system" }}.svc:15012
{{- end }}

{{/* Local config (LOCAL_XDS_PATH): the ConfigMap's name, or "" when none. */}}
{{- define "zring.localConfigMap" -}}
{{- $lc := (.Values.zring).localConfig | default dict }}
{{- if $lc.configMapName }}{{ $lc.configMapName }}
{{- else if $lc.config }}{{ include "ztunnel.release-name" . }}-zring-config
{{- end }}
{{- end }}
{{- define "zring.localConfigKey" -}}
{{- ((.Values.zring).localConfig).key | default "config.yaml" }}
{{- end }}

{{/* A value as a string; numbers without exponent or fraction when whole (values
files give float64: 1048576 must not become "1.048576e+06"). */}}
{{- define "zring.str" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}{{ int64 . }}
{{- else if kindIs "invalid" . }}
{{- else }}{{ toString . }}
{{- end }}
{{- end }}

{{/* Environment of the istio-proxy container, as a YAML list: Istio's chart's
variables in its order, then zring's, then meshConfig.defaultConfig.proxyMetadata, then
.Values.env. A later source replaces a variable of the same name from an earlier one,
so every name appears once. */}}
{{- define "zring.env" -}}
{{- $ := . }}
{{- $fieldRef := dict }}
{{- $envs := list }}
{{- $envs = append $envs (dict "name" "CA_ADDRESS" "value" (.Values.caAddress | default (include "zring.istiodAddress" .))) }}
{{- $envs = append $envs (dict "name" "XDS_ADDRESS" "value" (.Values.xdsAddress | default (include "zring.istiodAddress" .))) }}
{{- if .Values.logAsJson }}
{{- $envs = append $envs (dict "name" "LOG_FORMAT" "value" "json") }}
{{- end }}
{{- with .Values.network }}
{{- $envs = append $envs (dict "name" "NETWORK" "value" (toString .)) }}
{{- end }}
{{- $envs = append $envs (dict "name" "RUST_LOG" "value" (.Values.logLevel | default "info" | toString)) }}
{{- $envs = append $envs (dict "name" "RUST_BACKTRACE" "value" "1") }}
{{- $envs = append $envs (dict "name" "ISTIO_META_CLUSTER_ID" "value" ((.Values.multiCluster).clusterName | default "Kubernetes" | toString)) }}
{{- $envs = append $envs (dict "name" "INPOD_ENABLED" "value" "true") }}
{{- $envs = append $envs (dict "name" "TERMINATION_GRACE_PERIOD_SECONDS" "value" (include "zring.str" .Values.terminationGracePeriodSeconds)) }}
{{- range $name, $path := dict "POD_NAME" "metadata.name" "POD_NAMESPACE" "metadata.namespace" "NODE_NAME" "spec.nodeName" "INSTANCE_IP" "status.podIP" "SERVICE_ACCOUNT" "spec.serviceAccountName" }}
{{- $_ := set $fieldRef $name $path }}
{{- end }}
{{- range $name := list "POD_NAME" "POD_NAMESPACE" "NODE_NAME" "INSTANCE_IP" "SERVICE_ACCOUNT" }}
{{- $envs = append $envs (dict "name" $name "valueFrom" (dict "fieldRef" (dict "fieldPath" (get $fieldRef $name)))) }}
{{- end }}
{{- $envs = append $envs (dict "name" "ZTUNNEL_CPU_LIMIT" "valueFrom" (dict "resourceFieldRef" (dict "resource" "limits.cpu"))) }}
{{- /* zring's own */}}
{{- $envs = append $envs (dict "name" "PROXY_MODE" "value" "shared") }}
{{- $shards := (.Values.zring).shards }}
{{- if or (kindIs "int" $shards) (kindIs "int64" $shards) (kindIs "float64" $shards) $shards }}
{{- $envs = append $envs (dict "name" "ZTUNNEL_WORKER_THREADS" "value" (include "zring.str" $shards)) }}
{{- end }}
{{- if include "zring.localConfigMap" . }}
{{- $envs = append $envs (dict "name" "LOCAL_XDS_PATH" "value" (printf "/etc/zring/config/%s" (include "zring.localConfigKey" .))) }}
{{- end }}
{{- /* then proxyMetadata and env, replacing same-named ones */}}
{{- $extra := list }}
{{- range $k, $v := (((.Values.meshConfig).defaultConfig).proxyMetadata | default dict) }}
{{- $extra = append $extra (dict "name" $k "value" (include "zring.str" $v)) }}
{{- end }}
{{- range $k, $v := (.Values.env | default dict) }}
{{- $extra = append $extra (dict "name" $k "value" (include "zring.str" $v)) }}
{{- end }}
{{- $all := concat $envs $extra }}
{{- $last := dict }}
{{- range $i, $e := $all }}
{{- $_ := set $last $e.name $i }}
{{- end }}
{{- $out := list }}
{{- range $i, $e := $all }}
{{- if eq (get $last $e.name) $i }}
{{- $out = append $out $e }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* Command-line arguments: Istio's `proxy ztunnel` (the image's entrypoint accepts
and drops them, so the image also runs under Istio's own chart), then zring's flags. */}}
{{- define "zring.args" -}}
{{- $z := .Values.zring | default dict }}
{{- $args := list "proxy" "ztunnel" }}
{{- if not $z.cpuPinning }}
{{- $args = append $args "--no-pin" }}
{{- end }}
{{- with $z.bufferSize }}
{{- $args = append $args (printf "--buf-size=%v" (int64 .)) }}
{{- end }}
{{- with $z.bufferCount }}
{{- $args = append $args (printf "--buf-count=%v" (int64 .)) }}
{{- end }}
{{- with $z.connBuffer }}
{{- $args = append $args (printf "--conn-buf=%v" (int64 .)) }}
{{- end }}
{{- with $z.busyPollMicros }}
{{- $args = append $args (printf "--busy-poll=%v" (int64 .)) }}
{{- end }}
{{- with $z.busyPollMode }}
{{- $args = append $args (printf "--busy-poll-mode=%s" .) }}
{{- end }}
{{- with $z.connectTimeoutMs }}
{{- $args = append $args (printf "--connect-timeout=%v" (int64 .)) }}
{{- end }}
{{- if ($z.embeddedCA).secretName }}
{{- $args = append $args (printf "--ca-cert=/etc/zring/ca/%s" ($z.embeddedCA.certKey | default "ca-cert.pem")) }}
{{- $args = append $args (printf "--ca-key=/etc/zring/ca/%s" ($z.embeddedCA.keyKey | default "ca-key.pem")) }}
{{- end }}
{{- range $z.extraArgs }}
{{- $args = append $args (toString .) }}
{{- end }}
{{- toYaml $args }}
{{- end }}
