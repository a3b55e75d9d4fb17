"""The realistic test harness shared by the integration tests, the e2e suite and `make demo`.

- `harness.emulator`: kmock's KubernetesEmulator made realistic where the operator needs it.
- `harness.workloads`: a tiny Deployment controller that turns replicas into pods that get ready.
- `harness.prometheus`: a real Prometheus server with backfilled history.
- `harness.exporter`: a live synthetic exporter whose load follows the Deployment's replicas.
"""
