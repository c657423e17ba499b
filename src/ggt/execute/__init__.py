"""Executors: how a stage's per-item function is run (local process pool today; Ray later)."""
