"""Deterministic sample e-coating process data for local runs, demos and tests."""
