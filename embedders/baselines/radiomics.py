"""Hand-crafted "radiomics-style" embedder: deterministic texture/intensity features per lung zone.

The image is resized to ``size`` x ``size`` (default 256), quantised to 8 bits, and split into 3 x 2
zones (upper / middle / lower x image-left / image-right, a segmentation-free approximation of the
radiological lung zones). Per zone (:data:`FEATURES_PER_ZONE` = 58 values):

* intensity: mean, std, skewness, excess kurtosis, percentiles 5/25/50/75/95, Shannon entropy (bits) (10);
* a 16-bin intensity histogram (16 grey levels of 256 per bin), as fractions (16);
* GLCM (grey-level co-occurrence) on 32 levels, distances 1 and 3, symmetric, averaged over
  0/45/90/135 degrees: contrast, dissimilarity, homogeneity, energy, correlation, ASM (12);
* LBP: uniform rotation-invariant codes of the 8 neighbours in the 3x3 square (P=8, R=1, ``>=`` centre),
  histogram of the 10 codes as fractions (10);
* gradients (central differences): mean and std of the magnitude and an 8-bin orientation histogram
  on [0, pi) weighted by magnitude, HOG-style (10).

Output: ``(6 * 58,) = (348,)`` float32. Pure numpy (vectorised; a few ms per image on one core);
no weights, no download.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..base import Embedder, ModelInfo, register

ZONES = (3, 2)
LEVELS = 32
GLCM_DISTANCES = (1, 3)
HIST_BINS = 16
ORIENT_BINS = 8
PERCENTILES = (0.05, 0.25, 0.50, 0.75, 0.95)
FEATURES_PER_ZONE = 10 + HIST_BINS + 6 * len(GLCM_DISTANCES) + 10 + (2 + ORIENT_BINS)
# (row, col) offsets of the GLCM pairs per distance for 0/45/90/135 degrees, rounded as scikit-image does
_OFFSETS = {d: [(int(round(np.sin(a) * d)), int(round(np.cos(a) * d))) for a in np.arange(4) * np.pi / 4]
            for d in GLCM_DISTANCES}
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))  # circular order


def _uniform_lbp_table() -> np.ndarray:
    """8-bit LBP code -> uniform rotation-invariant label: number of set bits if <= 2 transitions, else 9."""
    table = np.empty(256, dtype=np.int64)
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        transitions = sum(bits[k] != bits[(k + 1) % 8] for k in range(8))
        table[code] = sum(bits) if transitions <= 2 else 9
    return table


_LBP_TABLE = _uniform_lbp_table()
_I, _J = np.meshgrid(np.arange(LEVELS), np.arange(LEVELS), indexing="ij")


def _zone_slices(size: int) -> list[tuple[slice, slice]]:
    rows = np.array_split(np.arange(size), ZONES[0])
    cols = np.array_split(np.arange(size), ZONES[1])
    return [(slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1)) for r in rows for c in cols]


def _shift(a: np.ndarray, dr: int, dc: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a[r, c], a[r + dr, c + dc]) over the valid region, as two equally shaped views."""
    h, w = a.shape
    r0, r1 = max(0, -dr), h - max(0, dr)
    c0, c1 = max(0, -dc), w - max(0, dc)
    return a[r0:r1, c0:c1], a[r0 + dr:r1 + dr, c0 + dc:c1 + dc]


def _intensity(z: np.ndarray, counts: np.ndarray) -> list[float]:
    """Moments of the zone values; percentiles and entropy from its 256-level histogram ``counts``."""
    z = z.astype(np.float64)
    mean, std = float(z.mean()), float(z.std())
    c = (z - mean) / std if std > 0 else np.zeros_like(z)
    c2 = c * c
    cdf = np.cumsum(counts) / z.size
    pct = (np.searchsorted(cdf, PERCENTILES) / 255.0).tolist()
    p = counts[counts > 0] / z.size
    return [mean, std, float((c2 * c).mean()), float((c2 * c2).mean() - 3.0), *pct, float(-(p * np.log2(p)).sum())]


def _glcm_matrices(q: np.ndarray) -> np.ndarray:
    """Normalised symmetric GLCMs of one zone, ``(n_distances, 4, LEVELS, LEVELS)``."""
    mats = np.empty((len(GLCM_DISTANCES), 4, LEVELS, LEVELS))
    for i, d in enumerate(GLCM_DISTANCES):
        for k, (dr, dc) in enumerate(_OFFSETS[d]):
            a, b = _shift(q, dr, dc)
            m = np.bincount((a * LEVELS + b).ravel(), minlength=LEVELS * LEVELS).reshape(LEVELS, LEVELS)
            mats[i, k] = m + m.T
    return mats / mats.sum(axis=(-1, -2), keepdims=True)


def _glcm_matrices_masked(q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """As :func:`_glcm_matrices` over the pixel pairs whose both pixels lie in ``mask`` (all-zero when none)."""
    mats = np.zeros((len(GLCM_DISTANCES), 4, LEVELS, LEVELS))
    for i, d in enumerate(GLCM_DISTANCES):
        for k, (dr, dc) in enumerate(_OFFSETS[d]):
            a, b = _shift(q, dr, dc)
            ma, mb = _shift(mask, dr, dc)
            m = np.bincount((a * LEVELS + b)[ma & mb], minlength=LEVELS * LEVELS).reshape(LEVELS, LEVELS)
            mats[i, k] = m + m.T
    total = mats.sum(axis=(-1, -2), keepdims=True)
    return mats / np.where(total > 0, total, 1.0)


def _glcm_props(m: np.ndarray) -> np.ndarray:
    """GLCM properties (definitions as scikit-image's graycoprops) of ``(..., 4, L, L)``, averaged over
    the 4 directions -> ``(..., 6)``: contrast, dissimilarity, homogeneity, energy, correlation, ASM."""
    diff2 = (_I - _J) ** 2
    s = lambda w: (m * w).sum(axis=(-1, -2))  # noqa: E731 -- weighted sum over the matrix
    mu = s(_I)[..., None, None]
    var = (m * (_I - mu) ** 2).sum(axis=(-1, -2))
    cov = (m * (_I - mu) * (_J - mu)).sum(axis=(-1, -2))
    asm = s(m)
    corr = np.where(var > 1e-15, cov / np.where(var > 1e-15, var, 1.0), 1.0)
    props = np.stack([s(diff2), s(np.sqrt(diff2)), s(1.0 / (1.0 + diff2)), np.sqrt(asm), corr, asm], axis=-1)
    return props.mean(axis=-2)


def radiomics_features(image: np.ndarray, regions: list[np.ndarray] | None = None) -> np.ndarray:
    """``(S, S)`` float image in [0, 1] -> ``(n_regions * FEATURES_PER_ZONE,)`` float32 features (see the module
    docstring). ``regions``: boolean ``(S, S)`` masks to describe instead of the 3 x 2 image zones (e.g. lung
    zones); an empty region gives zeros."""
    u8 = np.rint(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    x = u8.astype(np.float32) / np.float32(255)
    q = (u8 // (256 // LEVELS)).astype(np.intp)
    # LBP on the interior; border pixels get label -1 and are excluded from the histograms below
    lbp = np.full(x.shape, -1, dtype=np.intp)
    centre = u8[1:-1, 1:-1]
    code = np.zeros(centre.shape, dtype=np.uint8)
    for k, (dr, dc) in enumerate(_NEIGHBOURS):
        code |= (u8[1 + dr:u8.shape[0] - 1 + dr, 1 + dc:u8.shape[1] - 1 + dc] >= centre).view(np.uint8) << k
    lbp[1:-1, 1:-1] = _LBP_TABLE[code]
    gy, gx = np.gradient(x)
    mag = np.hypot(gx, gy)
    ang = np.minimum(((np.arctan2(gy, gx) % np.pi) / np.pi * ORIENT_BINS).astype(np.int64), ORIENT_BINS - 1)
    zones = _zone_slices(x.shape[0]) if regions is None else [np.asarray(r, dtype=bool) for r in regions]
    glcm = _glcm_props(np.stack([_glcm_matrices(q[z]) if regions is None else _glcm_matrices_masked(q, z)
                                 for z in zones]))  # (zones, distances, 6)
    out: list[float] = []
    for zone, where in enumerate(zones):
        z = x[where]
        if z.size == 0:
            out += [0.0] * FEATURES_PER_ZONE
            continue
        counts = np.bincount(u8[where].ravel(), minlength=256)
        out += _intensity(z, counts)
        out += (counts.reshape(HIST_BINS, -1).sum(axis=1) / z.size).tolist()
        out += glcm[zone].ravel().tolist()
        codes = lbp[where]
        codes = codes[codes >= 0]
        out += (np.bincount(codes, minlength=10) / max(codes.size, 1)).tolist()
        m = mag[where]
        hist = np.bincount(ang[where].ravel(), weights=m.ravel(), minlength=ORIENT_BINS)
        out += [float(m.mean()), float(m.std()), *(hist / hist.sum() if hist.sum() > 0 else hist).tolist()]
    return np.asarray(out, dtype=np.float32)


class RadiomicsEmbedder(Embedder):
    """Per-zone radiomics-style features; ``preprocess`` resizes, ``forward`` computes features per image."""

    def __init__(self, info: ModelInfo) -> None:
        super().__init__()
        self.info = info
        self.weights_sha256 = None

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` in [0, 1] -> ``(S, S)`` bilinear antialiased resize."""
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
        size = self.info.input_size
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, S, S)`` -> ``(B, 348)`` features."""
        return torch.from_numpy(np.stack([radiomics_features(img) for img in batch.numpy()]))


RADIOMICS = ModelInfo(
    name="radiomics", version="1", output_shape=(len(_zone_slices(256)) * FEATURES_PER_ZONE,), input_size=256,
    resize="bilinear (antialiased) to 256x256; 3x2 zones", weights_source="none (hand-crafted)", license="Apache-2.0",
    notes="intensity stats + histogram, GLCM, LBP, gradient-orientation histogram per zone",
)


@register(RADIOMICS)
def radiomics(weights: Path | None = None) -> RadiomicsEmbedder:
    """The radiomics-style baseline (no weights; ``weights`` must be None)."""
    if weights is not None:
        raise ValueError("the radiomics embedder takes no weights; drop --weights / `weights:` for it")
    return RadiomicsEmbedder(RADIOMICS)
