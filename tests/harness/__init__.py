"""Test-only fakes and fault injectors; the realistic lab they run beside is `foreseer.lab`.

- `harness.fakes`: a frozen clock and a scripted Prometheus, for tests of the control cycle.
- `harness.faults`: a fault-injecting proxy in front of a real Prometheus, for the fault matrix.
- `harness.proxies`: a bearer-token gate in front of Prometheus.

Pytest fixtures over the lab live in ``tests/conftest.py``: `emulator`, `kubeconfig`,
`deployments`, `exporter`, `prometheus_binaries` and `prometheus_factory`.
"""
