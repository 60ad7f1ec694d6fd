"""Tensors to pictures, and the one sink every figure goes through."""

from .images import to_pil
from .sink import ImageSink

__all__ = ["ImageSink", "to_pil"]
