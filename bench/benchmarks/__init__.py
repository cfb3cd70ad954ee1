"""Runnable benchmark scripts (``python -m bench.benchmarks.<name>``); not part of the test suite."""
