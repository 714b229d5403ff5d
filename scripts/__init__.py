"""Runnable scripts: benchmarks, attack generators, demos (not imported by the packages)."""
