"""Baseline embedders that run anywhere with no download (radiomics-style features, raw-pixel thumbnails,
local-checkpoint CNNs)."""
from . import cnn, lung_radiomics, radiomics, thumbnail, unet  # noqa: F401 -- importing registers them
