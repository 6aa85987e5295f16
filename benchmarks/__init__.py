"""Benchmarks of the tflm_training runtime (not tests; see README.md)."""
