"""Casebook's benchmarks: figures for the design constraints, run with `bench/run.py`."""
