{{/* The alert rules, shared by the PrometheusRule and the promtool test (tests render this). */}}
{{- define "valkey-operator.ruleGroups" -}}
groups:
  - name: valkey-operator
    rules:
      - alert: ValkeyCertificateExpiringSoon
        # Each certificate's own threshold: notAfter - its cluster's spec.tls.certificates.warnBefore.
        expr: |
          time() >= valkey_operator_certificate_warning_timestamp_seconds
          and on (namespace, cluster, certificate) (valkey_operator_certificate_expiration_timestamp_seconds - time()) > 0
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: "Certificate {{ "{{" }} $labels.certificate {{ "}}" }} of ValkeyCluster {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.cluster {{ "}}" }} has passed its warnBefore and expires soon"
          description: "The operator renews certificates before this; check the ValkeyCluster's CertificatesReady condition and its Events."
      - alert: ValkeyCertificateExpired
        expr: (valkey_operator_certificate_expiration_timestamp_seconds - time()) <= 0
        labels:
          severity: critical
        annotations:
          summary: "Certificate {{ "{{" }} $labels.certificate {{ "}}" }} of ValkeyCluster {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.cluster {{ "}}" }} has expired"
          description: "Clients and replicas can no longer connect with it. Check the issuer and the operator's logs."
      - alert: ValkeyCertificateNotReady
        expr: valkey_operator_certificate_ready_status == 0
        for: 15m
        labels:
          severity: warning
        annotations:
          summary: "Certificate {{ "{{" }} $labels.certificate {{ "}}" }} of ValkeyCluster {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.cluster {{ "}}" }} is not ready"
          description: "kubectl describe valkeycluster shows the reason in the CertificatesReady condition."
      - alert: ValkeyOperatorReconcileErrors
        expr: sum by (handler, reason) (rate(valkey_operator_reconcile_errors_total[10m])) > 0
        for: 15m
        labels:
          severity: warning
        annotations:
          summary: "The Valkey operator's {{ "{{" }} $labels.handler {{ "}}" }} passes fail ({{ "{{" }} $labels.reason {{ "}}" }})"
          description: "Read the operator's logs."
      - alert: ValkeyClusterNotReady
        expr: valkey_operator_cluster_ready == 0
        for: 15m
        labels:
          severity: warning
        annotations:
          summary: "ValkeyCluster {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.cluster {{ "}}" }} is not ready"
          description: "kubectl get valkeycluster shows its phase; its conditions say why."
      - alert: ValkeyRepeatedFailovers
        # One lost primary is what failover is for; several in an hour mean pods keep dying.
        expr: sum by (namespace, cluster) (increase(valkey_operator_failovers_total{reason="primary-lost"}[1h])) >= 3
        labels:
          severity: warning
        annotations:
          summary: "ValkeyCluster {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.cluster {{ "}}" }} lost its primary {{ "{{" }} $value | humanize {{ "}}" }} times in an hour"
          description: "Each failover may lose the writes not yet replicated. Look at the pods' restarts, OOM kills and nodes, and the ValkeyCluster's FailedOver Events."
{{- end -}}
