"""Benchmarks: they print a table and write JSON under bench/results/; they never assert."""
