"""Benchmarks: `python -m foreseer.bench forecast|loop|operator`."""
