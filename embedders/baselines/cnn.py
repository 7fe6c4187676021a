"""Generic local-checkpoint CNN embedder: a plain PyTorch ``state_dict`` for a known architecture.

Architectures are built by hand in plain torch (torchvision does not work with the CPU torch wheel) with
torchvision's module layout, so torchvision-style checkpoints load with ``strict=True``. The embedding is
the global average pool of the last feature map (the penultimate features); :meth:`CNNEmbedder.logits`
runs the checkpoint's own classification head on the same feature map.

To add an architecture (e.g. DenseNet-121 for CheXNet-style checkpoints): write a builder
``(state_dict) -> nn.Module`` with ``.features`` and ``.classifier`` and the torchvision key layout, add it
to :data:`ARCHITECTURES`, register a :class:`ModelInfo` with an :class:`embedders.preprocess.ImageSpec` of the
checkpoint's own preprocessing, and add a test that loads real weights and reproduces their logits.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..base import Embedder, ModelInfo, WeightsError, register, resolve_weights_file, verify_sha256
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageSpec


class Fire(nn.Module):
    """SqueezeNet fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated (in that order)."""

    def __init__(self, inplanes: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet11(nn.Module):
    """SqueezeNet 1.1 (Iandola et al. 2016) with torchvision's layout; ``features`` -> (B, 512, 13, 13) at 224 px."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Conv2d(512, num_classes, kernel_size=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return torch.flatten(self.classifier(self.features(x)), 1)


def _build_squeezenet1_1(state: dict[str, torch.Tensor]) -> nn.Module:
    return SqueezeNet11(num_classes=int(state["classifier.1.weight"].shape[0]))


# architecture name -> builder from the checkpoint's state_dict (head size read from it)
ARCHITECTURES: dict[str, Callable[[dict[str, torch.Tensor]], nn.Module]] = {
    "squeezenet1_1": _build_squeezenet1_1,
}


class CNNEmbedder(Embedder):
    """Pooled penultimate features of a state_dict CNN: grey -> 3 channels, resize, normalize, ``features``, GAP."""

    def __init__(self, info: ModelInfo, spec: ImageSpec, model: nn.Module, *, weights_sha256: str,
                 classes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.info = info
        self.spec = spec
        self.model = model.eval()
        self.weights_sha256 = weights_sha256
        self.classes = classes

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` in [0, 1] -> ``(3, S, S)`` as the checkpoint's own pipeline (8-bit PIL resize, /255, norm)."""
        return self.spec(image)

    def to(self, device: str | torch.device = "cpu", *, half: bool = False) -> CNNEmbedder:
        super().to(device, half=half)
        self.model.to(self.device, dtype=torch.float16 if self.half else torch.float32)
        return self

    @torch.inference_mode()
    def feature_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> last feature map ``(B, C, h, w)`` float32 on CPU."""
        x = batch.to(self.device, dtype=torch.float16 if self.half else torch.float32)
        return self.model.features(x).float().cpu()

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, C)`` global-average-pooled features."""
        return self.feature_maps(batch).mean(dim=(2, 3))

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> the checkpoint's own head output ``(B, n_classes)`` (order in ``self.classes``)."""
        fmap = self.feature_maps(batch).to(self.device, dtype=torch.float16 if self.half else torch.float32)
        return torch.flatten(self.model.classifier(fmap), 1).float().cpu()


def read_state_dict(weights: Path | None, *, info: ModelInfo, verify_sha256_: bool = True) -> tuple[dict, Path, str]:
    """The state_dict at ``weights`` (file, or folder holding one) for ``info``'s model, its path and sha256
    (checked against ``info.sha256`` when ``verify_sha256_``); unreadable files raise :class:`WeightsError`."""
    path = resolve_weights_file(weights, model=info.name)
    digest = verify_sha256(path, expected=info.sha256 if verify_sha256_ else None, model=info.name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch raises many types for bad files
        raise WeightsError(f"cannot read {path} as a PyTorch state_dict: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, expected a state_dict (OrderedDict of tensors)")
    return state, path, digest


def load_strict(model: nn.Module, state: dict, *, path: Path, layout: str) -> nn.Module:
    """``model`` with ``state`` loaded (``strict=True``), in eval mode; a mismatch names ``path`` and ``layout``."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not match the {layout}: {exc}") from exc
    return model.eval()


def load_state_dict_cnn(info: ModelInfo, spec: ImageSpec, architecture: str, weights: Path | None, *,
                        verify_sha256_: bool = True, classes: tuple[str, ...] = ()) -> CNNEmbedder:
    """Build ``architecture``, load the state_dict at ``weights`` with ``strict=True`` and wrap it as an
    embedder that preprocesses with ``spec``."""
    state, path, digest = read_state_dict(weights, info=info, verify_sha256_=verify_sha256_)
    model = load_strict(ARCHITECTURES[architecture](state), state, path=path, layout=f"{architecture} architecture")
    return CNNEmbedder(info, spec, model, weights_sha256=digest, classes=classes)


# the repository's streamlit_app.py: PIL .convert("RGB"), Resize((224, 224)) (PIL bilinear), ToTensor, ImageNet norm
SQUEEZENET_SPEC = ImageSpec(224, "squash", "bilinear", IMAGENET_MEAN, IMAGENET_STD)
SQUEEZENET_KERMANY = ModelInfo(
    name="squeezenet1_1", version="kermany-pneumonia@1d24375", output_shape=(512,), input_size=224,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, resize=SQUEEZENET_SPEC.describe(),
    weights_source="github.com/m3mentomor1/Pneumonia_Detection_with_Lightweight-CNN-Models Models/squeezenet1_1_model.pth",
    license="MIT", sha256="f469942680d218bf22fd6a9298c0daa741ce48257bdfe7a5eac3ebdd9ba93d16",
    notes="SqueezeNet 1.1 fine-tuned on Kermany paediatric CXRs (3 classes); 512-d global-average-pooled features",
)
KERMANY_CLASSES = ("Bacterial Pneumonia", "Normal", "Viral Pneumonia")


@register(SQUEEZENET_KERMANY)
def squeezenet1_1(weights: Path | None, *, verify_sha256: bool = True) -> CNNEmbedder:
    """SqueezeNet 1.1 from a torchvision-layout state_dict (``--weights`` file or folder)."""
    return load_state_dict_cnn(SQUEEZENET_KERMANY, SQUEEZENET_SPEC, "squeezenet1_1", weights,
                               verify_sha256_=verify_sha256,
                               classes=KERMANY_CLASSES if verify_sha256 else ())
