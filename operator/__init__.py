"""The Kubernetes operator: pure decision engine, thin Kopf handlers, I/O adapters."""
