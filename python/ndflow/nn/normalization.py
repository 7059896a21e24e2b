"""Normalization layers (BatchNorm1d/2d, LayerNorm)."""
__all__ = []
