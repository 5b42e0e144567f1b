"""Reusable layers shared by the operators: conditioning embeddings, FiLM and adaptive norms,
grid helpers (padding, cropping, spectral resizing, coordinates)."""

from sciflow.nn.embedding import ConditionEmbedding, FourierFeatures, check_cond
from sciflow.nn.film import AdaptiveGroupNorm, AdaptiveLayerNorm, FiLM
from sciflow.nn.grid import (
    coordinate_channels,
    crop_spatial,
    fourier_resize,
    pad_spatial,
    pad_to_multiple,
)

__all__ = [
    "AdaptiveGroupNorm",
    "AdaptiveLayerNorm",
    "ConditionEmbedding",
    "FiLM",
    "FourierFeatures",
    "check_cond",
    "coordinate_channels",
    "crop_spatial",
    "fourier_resize",
    "pad_spatial",
    "pad_to_multiple",
]
