"""Recurrent layers (LSTM), built from ops."""
__all__ = []
