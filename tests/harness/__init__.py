"""The realistic test harness shared by the integration tests, the e2e suite and `make demo`.

- `harness.emulator`: kmock's KubernetesEmulator with real API semantics where foreseer and
  Kopf depend on them (resourceVersion, generation, /status and /scale subresources, 409,
  generateName, resumable watches), plus fault injection (`fail_next`, `before_next`).
- `harness.workloads`: a tiny Deployment controller: replicas become pods that get Ready
  after a set delay, and the Deployment gets a status.
- `harness.prometheus`: a real Prometheus server with backfilled history (promtool),
  stop/start for outages, basic auth and TLS, and its own query log for assertions.
- `harness.exporter`: a live exporter whose load follows a function of time and whose load
  per replica follows the Deployment's ready replicas.
- `harness.proxies`: a bearer-token gate in front of Prometheus.
- `harness.fakes`: a frozen clock and a scripted Prometheus, for tests of the control cycle.
- `harness.waiting`: deadline-bounded polling (`until`); tests never sleep blindly.

Pytest fixtures over these live in ``tests/conftest.py``: `emulator`, `kubeconfig`,
`deployments`, `exporter`, `prometheus_binaries` and `prometheus_factory`. Blocking calls of
`PrometheusServer` (start, stop, query, wait_for) belong in ``asyncio.to_thread`` when the
emulator or the exporter serve from the same event loop.
"""
