"""The benchmark harness behind benchmarks/run.py: environments, measured runs, workloads, reports."""
