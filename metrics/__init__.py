"""Retrieval ranks and FAD, as plain functions and evaluate modules (not built yet: see the README)."""
