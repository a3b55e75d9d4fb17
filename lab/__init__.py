"""The lab: a realistic stand-in for a cluster and its metrics, for tests, benchmarks and the demo.

Installed with the ``[lab]`` extra (kmock, cel-python, jsonschema, jsonpatch); the operator
never imports it (an import-linter contract checks that).

- `foreseer.lab.emulator`: kmock's KubernetesEmulator with real API semantics where foreseer
  and Kopf depend on them (resourceVersion, generation, /status and /scale subresources, 409,
  generateName, resumable watches), plus fault injection (`fail_next`, `before_next`).
- `foreseer.lab.crd_validation`: validation of objects against the generated CRD the way the
  API server does it (defaults, OpenAPI schema, CEL rules), for the emulator and the CRD tests.
- `foreseer.lab.workloads`: a tiny Deployment controller: replicas become pods that get Ready
  after a set delay, and the Deployment gets a status.
- `foreseer.lab.prometheus`: a real Prometheus server with backfilled history (promtool),
  stop/start for outages, basic auth and TLS, and its own query log for assertions.
- `foreseer.lab.exporter`: a live exporter whose load follows a function of time and whose
  load per replica follows the Deployment's ready replicas.
- `foreseer.lab.waiting`: deadline-bounded polling (`until`).
- `foreseer.lab.demo`: `make demo`, the operator on a replayed real trace next to a reactive
  twin.

Blocking calls of `PrometheusServer` (start, stop, query, wait_for) belong in
``asyncio.to_thread`` when the emulator or the exporter serve from the same event loop.
"""
