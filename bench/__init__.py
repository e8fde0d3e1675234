"""Benchmarks: scripts that print figures (``python bench/replay.py``); nothing here asserts on speed."""
