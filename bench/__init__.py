"""Benchmarks and cost model of issue #6: `make bench` writes docs/performance.md; `make cost`."""
