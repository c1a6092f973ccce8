"""Benchmark scripts and the harness (`python -m benchmarks.run`)."""
