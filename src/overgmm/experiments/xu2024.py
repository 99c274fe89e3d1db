"""Experiments of xu2024 (placeholder until implemented)."""

EXPERIMENTS: list = []
