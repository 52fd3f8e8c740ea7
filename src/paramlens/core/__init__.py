"""Core primitives every method stands on: weight targets, safe loading, data, run folders."""
