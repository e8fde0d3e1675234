"""Reporters that render results to documents (one module per format)."""
