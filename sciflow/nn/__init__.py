"""Reusable layers shared by the operators: conditioning embeddings, FiLM and adaptive norms,
rotary position embeddings, grid helpers (padding, cropping, spectral resizing, coordinates)."""

from sciflow.nn.embedding import ConditionEmbedding, FourierFeatures, check_cond
from sciflow.nn.film import AdaptiveGroupNorm, AdaptiveLayerNorm, FiLM
from sciflow.nn.grid import (
    coordinate_channels,
    crop_spatial,
    fourier_resize,
    pad_spatial,
    pad_to_multiple,
)
from sciflow.nn.rotary import RotaryEmbedding1d, axis_positions

__all__ = [
    "AdaptiveGroupNorm",
    "AdaptiveLayerNorm",
    "ConditionEmbedding",
    "FiLM",
    "FourierFeatures",
    "RotaryEmbedding1d",
    "axis_positions",
    "check_cond",
    "coordinate_channels",
    "crop_spatial",
    "fourier_resize",
    "pad_spatial",
    "pad_to_multiple",
]
