"""Fixtures for the foundation-adapter tests: a real radiograph and helpers that write tiny checkpoints
in the on-disk layout of each real release (file names, key names, sharding)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def xray(shared_data: Path) -> np.ndarray:
    """A real chest X-ray from ../shared/data decoded by the cohorts loader: (H, W) float32 in [0, 1]."""
    from cohorts.images import load_image

    path = sorted((shared_data / "covid-chestxray-dataset" / "images").glob("*.png"))[0]
    return load_image(path)


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def write_sharded(folder: Path, state: dict[str, torch.Tensor], *, shards: int) -> None:
    """``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json`` as HF sharded releases."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    weight_map = {}
    for index, chunk in enumerate(np.array_split(np.array(keys, dtype=object), shards), start=1):
        name = f"model-{index:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k].contiguous() for k in chunk}, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in chunk})
    write_json(folder / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})


def seeded(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Re-draw every parameter from N(0, 0.2) (deterministic) so LayerNorms/biases are not trivial."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return module.eval()


@pytest.fixture(scope="session")
def ckpt() -> SimpleNamespace:
    """The checkpoint-writing helpers above, for test modules (importlib mode cannot import conftest)."""
    return SimpleNamespace(write_json=write_json, write_sharded=write_sharded, seeded=seeded)
