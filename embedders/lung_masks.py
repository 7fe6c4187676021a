"""Checks of the JSRT UNet's lung masks on real images: fractions, placement, and an overlay figure.

``embedders.run`` calls :func:`write_mask_checks` when a configured model uses the UNet, so every run that
relies on the masks shows them (``figures/lung_masks.png``, ``lung_mask_checks.csv``) in its report.
"""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from cohorts.images import load_image  # noqa: E402

from .baselines.lung_radiomics import lung_regions  # noqa: E402
from .baselines.unet import CLASSES, JsrtUNet, load_unet, square_input  # noqa: E402

log = logging.getLogger(__name__)

# plausible ranges on adult frontal CXRs (the checkpoint's README: lungs 23-30 %, heart 7-10 % on 8 images)
LUNG_FRACTION = (0.12, 0.45)
HEART_FRACTION = (0.02, 0.20)


def mask_stats(classes: np.ndarray) -> dict[str, float | bool]:
    """Class fractions and placement of one ``(S, S)`` class map.

    ``placement_ok``: two lung fields, one centred in each half of the image, both centred above the image's
    lower 15 %, and the heart's centre between the two lung centres (columns).
    """
    s = classes.shape[1]
    regions = lung_regions(classes)
    out: dict[str, float | bool] = {f"{name}_fraction": float((classes == k).mean()) for k, name in enumerate(CLASSES)}
    centres = [np.argwhere(m).mean(axis=0) / s if m.any() else np.array([np.nan, np.nan]) for m in regions.lungs]
    heart = np.argwhere(regions.heart).mean(axis=0) / s if regions.heart.any() else np.array([np.nan, np.nan])
    out.update({"lung_left_col": float(centres[0][1]), "lung_right_col": float(centres[1][1]),
                "lung_left_row": float(centres[0][0]), "lung_right_row": float(centres[1][0]),
                "heart_col": float(heart[1])})
    out["placement_ok"] = bool(centres[0][1] < 0.5 < centres[1][1] and max(centres[0][0], centres[1][0]) < 0.85
                               and centres[0][1] < heart[1] < centres[1][1])
    out["fractions_ok"] = bool(LUNG_FRACTION[0] <= out["lungs_fraction"] <= LUNG_FRACTION[1]
                               and HEART_FRACTION[0] <= out["heart_fraction"] <= HEART_FRACTION[1])
    return out


def segment_images(model: JsrtUNet, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Padded 512 px inputs ``(n, 512, 512)`` and class maps ``(n, 512, 512)`` of the images at ``paths``."""
    x = torch.stack([square_input(load_image(p)) for p in paths])
    with torch.inference_mode():
        classes = model.eval()(x).argmax(dim=1)
    return x[:, 0].numpy(), classes.numpy()


def overlay_figure(images: np.ndarray, classes: np.ndarray, path: Path, *, titles: list[str]) -> Path:
    """A row of images with lung zones / heart outlined; PNG at ``path``."""
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False)
    colours = ["tab:blue", "tab:cyan", "tab:green", "tab:orange", "tab:red", "tab:purple"]
    for ax, img, cls, title in zip(axes[0], images, classes, titles):
        regions = lung_regions(cls)
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        for zone, colour in zip(regions.zones, colours):
            if zone.any():
                ax.contour(zone, levels=[0.5], colors=colour, linewidths=0.8)
        if regions.heart.any():
            ax.contour(regions.heart, levels=[0.5], colors="yellow", linewidths=0.8, linestyles="dashed")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.suptitle("JSRT UNet lung zones (upper/middle/lower per lung) and heart (dashed)", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_mask_checks(manifest: pd.DataFrame, weights: Path, out: Path, *, n_images: int = 6,
                      seed: int = 0) -> dict[str, Path]:
    """Segment ``n_images`` images of ``manifest`` (seeded choice among rows with a path), write
    ``out/lung_mask_checks.csv`` (:func:`mask_stats` per image) and ``out/figures/lung_masks.png``."""
    rows = manifest[manifest["path"].notna()]
    rows = rows.iloc[np.sort(np.random.default_rng(seed).choice(len(rows), size=min(n_images, len(rows)),
                                                               replace=False))]
    model, _ = load_unet(weights)
    images, classes = segment_images(model, rows["path"].tolist())
    stats = pd.DataFrame([mask_stats(c) for c in classes]).assign(image_id=rows["image_id"].to_numpy())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats.to_csv(out / "lung_mask_checks.csv", index=False)
    titles = [f"{i}\nlungs {r.lungs_fraction:.0%} heart {r.heart_fraction:.0%}"
              for i, r in zip(rows["image_id"], stats.itertuples())]
    fig = overlay_figure(images, classes, out / "figures" / "lung_masks.png", titles=titles)
    log.info("lung masks on %d images: placement ok %d, fractions ok %d (%s)", len(stats),
             int(stats["placement_ok"].sum()), int(stats["fractions_ok"].sum()), out / "lung_mask_checks.csv")
    return {"mask_checks": out / "lung_mask_checks.csv", "mask_figure": fig}
