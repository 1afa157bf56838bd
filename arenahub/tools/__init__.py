"""Programs for demos, tests and benchmarks (not part of a deployment)."""
