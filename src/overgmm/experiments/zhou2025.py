"""Experiments of zhou2025 (placeholder until implemented)."""

EXPERIMENTS: list = []
