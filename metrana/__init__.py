"""Metrana: metrics for ML and RL training loops."""

__version__ = "0.3.0.dev0"
