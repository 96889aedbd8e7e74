"""Benchmarks and the cost model: `make bench` writes docs/performance.md, `make cost` prints
the monthly cost per service."""
