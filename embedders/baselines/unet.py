"""The HybridGNet/JSRT lung-segmentation UNet (Gaggion et al., MICCAI 2021 baseline) as an embedder and as anatomy.

Written from the weights' layout alone (the checkpoint's README; no code of its GPL-3.0 repository is used,
and the weights are only ever read from the user's path). Layout, inferred from the state_dict's 98 tensors:

* every block is a pre-activation residual unit: ``block`` = BN(in) -> ReLU -> conv3x3(in, out) -> BN(out)
  -> ReLU -> conv3x3(out, out), plus ``skip`` = conv1x1(in, out, no bias) -> BN(out); output = ReLU(block + skip)
  (the bottleneck, 64 -> 64, has no ``skip`` and adds its input). Of the orderings the shapes allow, this is the
  one whose masks are anatomical (lungs 22-29 %, heart 8-9 %, clavicles 1.9-2.3 % on three real images, as the
  README reports); without the ReLU after the sum the heart lands on the spine and clavicles vanish;
* encoder widths 8/16/32/64 with 2x2 max-pooling between levels, bottleneck at 64 (1/16 resolution);
  decoder: bilinear 2x upsampling, concatenation with the encoder level, a block; ``conv_last`` 1x1 -> 4 classes
  (0 background, 1 lungs, 2 heart, 3 clavicles).

Every BatchNorm was trained with ``track_running_stats=False``: it normalises with the statistics of the
current batch, which for one image per batch is instance normalisation; :class:`ImageNorm` does exactly that
per image, so batches of any size give each image the result it gets alone.

Input: grey in [0, 1] (uint8 / 255), zero-padded to a square, resized to 512 x 512. The embedding
(:data:`UNET_JSRT`) is the mean and SD over space of every encoder level and the bottleneck,
``2 * (8 + 16 + 32 + 64 + 64) = 368`` values: anatomy-aware features of a network that never saw a label of
pathology. :func:`lung_masks` gives the segmentation used by the lung-zone radiomics
(``embedders.baselines.lung_radiomics``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..base import Embedder, ModelInfo, register
from .cnn import load_strict, read_state_dict

SIZE = 512
WIDTHS = (8, 16, 32, 64)
CLASSES = ("background", "lungs", "heart", "clavicles")


class ImageNorm(nn.BatchNorm2d):
    """BatchNorm without running statistics, applied per image (= BatchNorm on a batch of one)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


class ResBlock(nn.Module):
    """Residual block ``ReLU(block(x) + skip(x))`` (``skip`` = identity when ``identity_skip``)."""

    def __init__(self, c_in: int, c_out: int, *, identity_skip: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(ImageNorm(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
                                   ImageNorm(c_out), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = None if identity_skip else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), ImageNorm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.block(x) + (x if self.skip is None else self.skip(x)))


class JsrtUNet(nn.Module):
    """The residual UNet with the checkpoint's module names; ``forward`` -> logits ``(B, 4, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        w = WIDTHS
        self.dconv_down1, self.dconv_down2 = ResBlock(1, w[0]), ResBlock(w[0], w[1])
        self.dconv_down3, self.dconv_down4 = ResBlock(w[1], w[2]), ResBlock(w[2], w[3])
        self.bottleneck = ResBlock(w[3], w[3], identity_skip=True)
        self.dconv_up4, self.dconv_up3 = ResBlock(w[3] * 2, w[3]), ResBlock(w[3] + w[2], w[2])
        self.dconv_up2, self.dconv_up1 = ResBlock(w[2] + w[1], w[1]), ResBlock(w[1] + w[0], w[0])
        self.conv_last = nn.Conv2d(w[0], len(CLASSES), 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 1, H, W)`` -> the four encoder maps and the bottleneck (H, H/2, ..., H/16)."""
        levels = [self.dconv_down1(x)]
        for down in (self.dconv_down2, self.dconv_down3, self.dconv_down4, self.bottleneck):
            levels.append(down(F.max_pool2d(levels[-1], 2)))
        return levels

    def decode(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Encoder maps + bottleneck -> logits at the input resolution."""
        x = levels[-1]
        for up, skip in zip((self.dconv_up4, self.dconv_up3, self.dconv_up2, self.dconv_up1), levels[-2::-1]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], dim=1))
        return self.conv_last(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def square_input(image: np.ndarray, *, size: int = SIZE) -> torch.Tensor:
    """``(H, W)`` in [0, 1] -> ``(1, size, size)``: rounded to 8 bits, zero-padded to a centred square,
    bilinear (antialiased) resize."""
    u8 = np.rint(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255) / np.float32(255)
    h, w = u8.shape
    side = max(h, w)
    canvas = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top:top + h, left:left + w] = u8
    x = torch.from_numpy(canvas)[None, None]
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)
    return x[0].clamp_(0.0, 1.0)


class UNetEmbedder(Embedder):
    """Pooled encoder features of the JSRT UNet (see the module docstring); also gives segmentations."""

    def __init__(self, info: ModelInfo, model: JsrtUNet, *, weights_sha256: str) -> None:
        super().__init__()
        self.info = info
        self.model = model.eval()
        self.weights_sha256 = weights_sha256

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` in [0, 1] -> ``(1, 512, 512)`` padded square."""
        return square_input(image)

    def to(self, device: str | torch.device = "cpu", *, half: bool = False) -> UNetEmbedder:
        super().to(device, half=False)        # instance norms in float16 lose the small-width statistics
        self.model.to(self.device)
        return self

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 512, 512)`` -> ``(B, 368)``: mean and SD over space of each encoder level and the bottleneck."""
        levels = self.model.encode(batch.to(self.device, dtype=torch.float32))
        pooled = [torch.cat([m.mean(dim=(2, 3)), m.std(dim=(2, 3))], dim=1) for m in levels]
        return torch.cat(pooled, dim=1).float().cpu()

    @torch.inference_mode()
    def segment(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 512, 512)`` -> class map ``(B, 512, 512)`` int64 (argmax of the logits; :data:`CLASSES`)."""
        return self.model(batch.to(self.device, dtype=torch.float32)).argmax(dim=1).cpu()


UNET_JSRT = ModelInfo(
    name="unet-jsrt", version="HybridGNet@33977bd weights/unet.pt", output_shape=(2 * (sum(WIDTHS) + WIDTHS[-1]),),
    input_size=SIZE, resize="uint8 grey /255, zero-pad to square, bilinear (antialiased) to 512x512, no mean/std",
    weights_source="github.com/ngaggion/HybridGNet weights/unet.pt at 33977bd (removed from HEAD later)",
    license="GPL-3.0 (weights loaded from the user's path, never bundled)",
    sha256="1fa71d35208b33b575ff0ffc4363c58ff599f69c5182d1bb7ddb2855c8c1b3ab",
    notes="lung/heart/clavicle segmentation UNet trained on JSRT (247 PA CXRs); 368-d mean+SD pooled encoder maps",
)


def load_unet(weights: Path | None, *, verify_sha256_: bool = True) -> tuple[JsrtUNet, str]:
    """Build :class:`JsrtUNet`, load the state_dict at ``weights`` (file or folder) with ``strict=True``;
    returns (model in eval mode, sha256 of the file)."""
    state, path, digest = read_state_dict(weights, info=UNET_JSRT, verify_sha256_=verify_sha256_)
    return load_strict(JsrtUNet(), state, path=path, layout="JSRT UNet layout"), digest


@register(UNET_JSRT)
def unet_jsrt(weights: Path | None, *, verify_sha256: bool = True) -> UNetEmbedder:
    """The JSRT UNet embedder from ``unet.pt`` (``--weights`` file or folder)."""
    model, digest = load_unet(weights, verify_sha256_=verify_sha256)
    return UNetEmbedder(UNET_JSRT, model, weights_sha256=digest)
