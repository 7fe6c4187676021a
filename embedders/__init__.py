"""Embedders: CXR foundation models and baselines -> the Zarr embedding store."""
from .base import Embedder, ModelInfo, WeightsError, available_models, get_embedder, register

__all__ = ["Embedder", "ModelInfo", "WeightsError", "available_models", "get_embedder", "register"]
