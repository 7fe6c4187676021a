"""Config of the embedders stage (YAML: configs/embedders/*.yaml, or the ``embedders`` section of a pipeline config)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.config import StrictModel, load_stage_config

from .augment import AugmentationName


class ModelSpec(StrictModel):
    """One registered embedder to extract (see ``embedders.available_models()``)."""

    name: str                                   # registry name, e.g. "squeezenet1_1", "radiomics"
    weights: Path | None = None                 # local file/folder; the CLI's --weights overrides it
    options: dict[str, Any] = Field(default_factory=dict)   # passed to the factory (e.g. verify_sha256)


class PrecomputedSpec(StrictModel):
    """Embeddings computed elsewhere, imported into the store as model ``name``.

    Formats (by suffix): ``.csv`` (the source study's: ``embedding_0..N``, ``dicom_id``, ``label``,
    ``augmentation``), ``.parquet`` (an id column + ``embedding_*`` columns or one list column),
    ``.npz`` (arrays ``id_column`` and ``embedding_key``), ``.npy`` (rows in manifest order, or ids in ``ids_path``).
    """

    name: str
    path: Path
    id_column: str = "dicom_id"                  # column / npz key holding the ids in the file
    match_column: str = "image_id"              # manifest column those ids are matched against
    embedding_key: str = "embedding"            # npz key, or parquet list column, or CSV/parquet column prefix
    augmentation_column: str | None = "augmentation"   # CSV/parquet column; missing column -> all "original"
    augmentation_map: dict[str, AugmentationName] = Field(default_factory=dict)   # file value -> store name
    ids_path: Path | None = None                # .npy only: a .npy/.txt of ids aligned with its rows
    version: str = ""                            # free text stamped into the store attrs
    # Per-image shape: "auto" reads it from the columns (embedding_T_D names, or a known flattened layout such as
    # CXR-Foundation's 24576 = 32 x 768), "flat" keeps one vector, [T, D] reshapes the flat values row-major.
    token_shape: list[int] | Literal["auto", "flat"] = "auto"
    patient_column: str | None = None           # patient id column: in the file, or in patient_table when given
    patient_table: Path | None = None           # .csv/.parquet with id_column and patient_column (e.g. MIMIC metadata)

    @model_validator(mode="after")
    def _check_patients(self) -> PrecomputedSpec:
        if isinstance(self.token_shape, list) and (not self.token_shape or min(self.token_shape) < 1):
            raise ValueError(f"token_shape must be positive sizes like [32, 768], got {self.token_shape}")
        if self.patient_table is not None and self.patient_column is None:
            raise ValueError("patient_table needs patient_column (the column of the table holding patient ids)")
        return self


class EmbeddersConfig(StrictModel):
    """What to extract and how; every field is documented in configs/README.md (## embedders)."""

    models: list[ModelSpec] = Field(default_factory=list)
    precomputed: list[PrecomputedSpec] = Field(default_factory=list)
    augmentations: list[AugmentationName] = Field(default_factory=lambda: ["original"])
    batch_size: int = Field(32, ge=1)
    chunk_rows: int = Field(64, ge=1)            # rows per zarr chunk = unit of work and of resumption
    decode_workers: int = Field(1, ge=0)        # DataLoader processes decoding + preprocessing ahead of the forward (0: inline)
    torch_threads: int | None = Field(1, ge=1)  # torch.set_num_threads for the forward (None: torch default)
    device: str = "cpu"
    half: bool = False                          # float16 forward (GPU only)
    workers: int = Field(0, ge=0)               # >0: run chunk shards on a dask LocalCluster of this many processes
    scheduler: str | None = None                # address of an existing dask scheduler (overrides workers)
    overwrite: bool = False                      # rebuild a store made from another manifest / model version
    seed: int = 0

    @field_validator("augmentations")
    @classmethod
    def _unique_augmentations(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or not v:
            raise ValueError(f"augmentations must be a non-empty list without repeats, got {v}")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> EmbeddersConfig:
        names = [m.name for m in self.models] + [p.name for p in self.precomputed]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique across models and precomputed, repeated: {dupes}")
        return self


def load_embedders_config(path: str | Path) -> EmbeddersConfig:
    """Load the stage YAML, or the ``embedders`` section of a composed pipeline config."""
    return load_stage_config(path, EmbeddersConfig, section="embedders")
