"""Embedders: CXR foundation models and baselines -> the Zarr embedding store."""
from .base import Embedder, ModelInfo, available_models, get_embedder, register

__all__ = ["Embedder", "ModelInfo", "available_models", "get_embedder", "register"]
