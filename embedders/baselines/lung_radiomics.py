"""Radiomics inside the lung fields segmented by the JSRT UNet (``embedders.baselines.unet``).

The fixed 3 x 2 image boxes of the ``radiomics`` baseline become anatomy: the UNet's lung class is split
into the two lungs (the two largest connected components, by centroid column; one merged field is cut at its
centroid column), and each lung into upper / middle / lower thirds of its own height. Features
(:data:`N_FEATURES` = 8 x 58 + 7 = 471):

* the 58 radiomics features of ``embedders.baselines.radiomics`` per region: image-left lung (the patient's
  right), image-right lung, then the six zones (upper, middle, lower of the image-left lung, then of the
  image-right lung);
* lung area of each lung as a fraction of the image (2);
* opacity extent per quadrant (upper / lower half of each lung, as radiographic ARDS severity scores such as
  RALE count it): the fraction of the quadrant's pixels at least as dense as the midpoint between aerated lung
  (the 10th percentile of all lung pixels) and soft tissue (the median of the heart pixels; the image's 90th
  percentile when no heart is found) (4);
* cardiothoracic ratio: heart width / width of the lung fields (1).

An empty region (failed segmentation, e.g. on the 45-degree rotations) gives zeros. The UNet runs at
``mask_size`` (512, the size it was trained at, by default); features are computed at 256 x 256 on the same
zero-padded square.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..base import Embedder, ModelInfo, register
from .radiomics import FEATURES_PER_ZONE, radiomics_features
from .unet import UNET_JSRT, JsrtUNet, load_unet, square_input

FEATURE_SIZE = 256
N_REGIONS = 8
N_EXTRA = 7
N_FEATURES = N_REGIONS * FEATURES_PER_ZONE + N_EXTRA
LUNG, HEART = 1, 2


@dataclass(frozen=True)
class LungRegions:
    """Boolean ``(S, S)`` masks: ``lungs`` (image-left, image-right), ``zones`` (upper/middle/lower of each,
    image-left first), ``quadrants`` (upper/lower of each), ``heart``."""

    lungs: tuple[np.ndarray, np.ndarray]
    zones: tuple[np.ndarray, ...]
    quadrants: tuple[np.ndarray, ...]
    heart: np.ndarray


def _split_rows(mask: np.ndarray, parts: int) -> list[np.ndarray]:
    """``mask`` cut into ``parts`` bands of equal height between its own top and bottom rows."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return [np.zeros_like(mask) for _ in range(parts)]
    edges = np.linspace(rows[0], rows[-1] + 1, parts + 1)
    r = np.arange(mask.shape[0])[:, None]
    return [mask & (r >= lo) & (r < hi) for lo, hi in zip(edges[:-1], edges[1:])]


def lung_regions(classes: np.ndarray) -> LungRegions:
    """UNet class map ``(S, S)`` (0 background, 1 lungs, 2 heart, 3 clavicles) -> :class:`LungRegions`."""
    lungs = classes == LUNG
    labels, n = ndimage.label(lungs)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    cols = np.arange(classes.shape[1])[None, :]
    big = [i + 1 for i in np.argsort(sizes)[::-1][:2] if sizes[i] >= 0.02 * sizes.sum()]
    if len(big) == 2:
        pair = [labels == i for i in big]
        pair.sort(key=lambda m: np.argwhere(m)[:, 1].mean())
    else:
        centre = np.argwhere(lungs)[:, 1].mean() if lungs.any() else classes.shape[1] / 2
        pair = [lungs & (cols < centre), lungs & (cols >= centre)]
    zones = tuple(z for lung in pair for z in _split_rows(lung, 3))
    quadrants = tuple(q for lung in pair for q in _split_rows(lung, 2))
    return LungRegions(lungs=(pair[0], pair[1]), zones=zones, quadrants=quadrants,
                       heart=_largest_component(classes == HEART))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask`` (all False when empty)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    return labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)


def anatomy_features(image: np.ndarray, regions: LungRegions) -> np.ndarray:
    """Lung area fractions (2), opacity extent per quadrant (4) and the cardiothoracic ratio (1) of an
    ``(S, S)`` image in [0, 1] (see the module docstring)."""
    lungs = regions.lungs[0] | regions.lungs[1]
    area = [float(m.mean()) for m in regions.lungs]
    if not lungs.any():
        return np.asarray(area + [0.0] * 5, dtype=np.float32)
    aerated = np.percentile(image[lungs], 10)
    tissue = np.median(image[regions.heart]) if regions.heart.any() else np.percentile(image, 90)
    threshold = (aerated + tissue) / 2
    extent = [float((image[q] >= threshold).mean()) if q.any() else 0.0 for q in regions.quadrants]
    lung_cols = np.flatnonzero(lungs.any(axis=0))
    heart_cols = np.flatnonzero(regions.heart.any(axis=0))
    ctr = (heart_cols[-1] - heart_cols[0] + 1) / (lung_cols[-1] - lung_cols[0] + 1) if heart_cols.size else 0.0
    return np.asarray(area + extent + [float(ctr)], dtype=np.float32)


def lung_radiomics_features(image: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``(S, S)`` image in [0, 1] and its UNet class map -> ``(N_FEATURES,)`` float32."""
    regions = lung_regions(classes)
    texture = radiomics_features(image, regions=[*regions.lungs, *regions.zones])
    return np.concatenate([texture, anatomy_features(image, regions)])


class LungRadiomicsEmbedder(Embedder):
    """Radiomics per lung and lung zone from the UNet's segmentation (see the module docstring)."""

    def __init__(self, info: ModelInfo, unet: JsrtUNet, *, weights_sha256: str, mask_size: int) -> None:
        super().__init__()
        self.info = info
        self.unet = unet.eval()
        self.weights_sha256 = weights_sha256
        self.mask_size = mask_size

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` in [0, 1] -> ``(1, mask_size, mask_size)`` zero-padded square (the UNet's input)."""
        return square_input(image, size=self.mask_size)

    def to(self, device: str | torch.device = "cpu", *, half: bool = False) -> LungRadiomicsEmbedder:
        super().to(device, half=False)
        self.unet.to(self.device)
        return self

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 1, M, M)`` -> ``(B, N_FEATURES)``: segment at M, describe at 256."""
        classes = self.unet(batch.to(self.device)).argmax(dim=1, keepdim=True).float()
        small = F.interpolate(batch, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", antialias=True,
                              align_corners=False).clamp_(0.0, 1.0)[:, 0].numpy()
        masks = F.interpolate(classes.cpu(), size=(FEATURE_SIZE, FEATURE_SIZE), mode="nearest")[:, 0]
        masks = masks.numpy().astype(np.int64)
        return torch.from_numpy(np.stack([lung_radiomics_features(x, c) for x, c in zip(small, masks)]))


LUNG_RADIOMICS = ModelInfo(
    name="radiomics-lung", version="1", output_shape=(N_FEATURES,), input_size=FEATURE_SIZE,
    resize="zero-pad to square; JSRT UNet masks at 512; features at 256x256 (bilinear, antialiased)",
    weights_source=UNET_JSRT.weights_source, license=UNET_JSRT.license, sha256=UNET_JSRT.sha256,
    notes="radiomics per lung and per lung zone inside the JSRT UNet lung fields + opacity extent per quadrant",
)


@register(LUNG_RADIOMICS)
def radiomics_lung(weights: Path | None, *, verify_sha256: bool = True, mask_size: int = 512) -> LungRadiomicsEmbedder:
    """Lung-zone radiomics; ``weights``: the JSRT UNet's ``unet.pt`` (file or folder)."""
    unet, digest = load_unet(weights, verify_sha256_=verify_sha256)
    return LungRadiomicsEmbedder(LUNG_RADIOMICS, unet, weights_sha256=digest, mask_size=mask_size)
