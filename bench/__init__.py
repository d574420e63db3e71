"""Benchmarks: asv suite (benchmarks.py) and pytest-benchmark comparisons (test_compare.py)."""
