"""Attune: the open-source rights layer for generative music."""

__version__ = "0.1.0"
