"""Experiments of wang2026 (placeholder until implemented)."""

EXPERIMENTS: list = []
