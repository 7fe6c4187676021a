"""Baseline embedders that run anywhere with no download (radiomics-style features, local-checkpoint CNNs)."""
from . import cnn, radiomics  # noqa: F401 -- importing registers them
