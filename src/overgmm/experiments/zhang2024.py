"""Experiments of zhang2024 (placeholder until implemented)."""

EXPERIMENTS: list = []
