"""Config of the cohorts stage (``python -m cohorts.run``): one entry per raw source, then shared options.

The generic machinery (:class:`core.config.StrictModel`, YAML reading with ``from:`` includes, loaders) lives in
:mod:`core.config`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from core.config import StrictModel

from .emory_tables import EmoryTable

FRONTAL_VIEWS = ("PA", "AP", "AP Supine")


class FlagLabel(StrictModel):
    """A binary label read from one column: ``positive`` values -> 1, ``negative`` -> 0, others -> missing."""

    column: str
    positive: list[str] = ["Y"]
    negative: list[str] = ["N"]


class NihSource(StrictModel):
    """NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (+ optional Google 2019 expert labels)."""

    kind: Literal["nih"]
    table: Path
    image_root: Path | None = None   # folder holding the PNGs; null -> label-only manifest (path null)
    labels: dict[str, str] = {"Atelectasis": "Atelectasis", "Edema": "Edema", "Effusion": "Effusion"}
    google_labels: Path | None = None   # google2019_nih-chest-xray-labels.csv(.gz)
    google_label_map: dict[str, str] = {"Opacity": "Airspace opacity"}   # name -> YES/NO column
    # optional per-image table (e.g. a redistributed subset's labels.csv): its ``image_table_key`` column holds
    # the NIH file name; ``image_table_columns`` (manifest column -> table column) are copied, e.g. {source: source_folder}
    image_table: Path | None = None
    image_table_key: str = "image"
    image_table_columns: dict[str, str] = {}


class ChexpertSource(StrictModel):
    """CheXpert: one ``Path``-style csv with 1 / 0 / -1 / blank label coding."""

    kind: Literal["chexpert"]
    table: Path
    image_root: Path | None = None   # folder that the csv's ``Path`` values are relative to
    labels: dict[str, str] = {"Atelectasis": "Atelectasis", "Edema": "Edema",
                              "Effusion": "Pleural Effusion", "Opacity": "Lung Opacity"}


class MimicSource(StrictModel):
    """MIMIC-CXR(-JPG): ``files/pXX/pNNN/sNNN/<dicom_id>.jpg|dcm`` + chexpert/metadata/split csvs."""

    kind: Literal["mimic"]
    root: Path                       # holds files/ and (by default) the csvs
    image_format: Literal["jpg", "dcm"] = "jpg"
    chexpert_csv: Path = Path("mimic-cxr-2.0.0-chexpert.csv.gz")   # relative to root unless absolute
    metadata_csv: Path = Path("mimic-cxr-2.0.0-metadata.csv.gz")
    split_csv: Path | None = Path("mimic-cxr-2.0.0-split.csv.gz")
    labels: dict[str, str] = {"Atelectasis": "Atelectasis", "Edema": "Edema",
                              "Effusion": "Pleural Effusion", "Opacity": "Lung Opacity"}


class CovidChestxraySource(StrictModel):
    """ieee8023 covid-chestxray-dataset: ``metadata.csv`` + images."""

    kind: Literal["covid-chestxray"]
    root: Path
    metadata: Path = Path("metadata.csv")   # relative to root unless absolute
    image_column: str = "png_file"          # column with the image path relative to root
    finding_labels: dict[str, str] = {"COVID19": "COVID-19", "ARDS": "ARDS"}   # name -> term in `finding`
    flag_labels: dict[str, FlagLabel] = {
        "ICU": FlagLabel(column="went_icu"),
        "Intubated": FlagLabel(column="intubated"),
        "Death": FlagLabel(column="survival", positive=["N"], negative=["Y"]),
    }


class HannoverSource(StrictModel):
    """Hannover Medical School covid-19-image-repository: ``data.csv`` + ``png/<image_id>.png``."""

    kind: Literal["hannover"]
    root: Path
    table: Path = Path("data.csv")
    image_dir: Path = Path("png")
    # labels that hold for every image because of who the repository enrolled (all patients are
    # confirmed COVID-19 cases): e.g. {COVID19: 1}; they win over covid-chestxray's imaging findings
    cohort_labels: dict[str, Literal[0, 1]] = Field(default_factory=dict)


class CsvSource(StrictModel):
    """A generic CSV manifest (one row per image) with an optional clinical csv + schema json."""

    kind: Literal["csv"]
    manifest: Path
    dataset: str = "csv"
    image_root: Path | None = None   # base for relative paths; default: the csv's folder
    columns: dict[str, str] = {}     # contract name -> csv column (image_id, patient_id, study_id, path, view, acquired_at, offset_days)
    labels: dict[str, str] = {}      # label name -> csv column coded 1 / 0 / -1 / blank
    extra_columns: list[str] = []    # other csv columns copied into the manifest
    clinical: Path | None = None     # csv keyed by the patient column named in clinical_id
    clinical_id: str = "patient_id"
    clinical_schema: Path | None = None   # json in the clinical_schema.json contract format


class EmorySource(StrictModel):
    """Emory-style split tables: one metadata table + findings/other tables joined on a key column."""

    kind: Literal["emory"]
    metadata: Path
    # findings and other tables (csv/parquet): a path (joined on `key`) or {path, key, on, columns}
    # (e.g. findings keyed by accession, SDOH by patient); read with pyarrow (cohorts.emory_tables)
    tables: list[Path | EmoryTable] = []
    key: str = "image_id"            # join column of the metadata (and of tables given as a bare path)
    keep_ids: Path | None = None     # keep only these metadata keys (.txt one per line, or a csv/parquet column `key`)
    dataset: str = "emory"
    image_root: Path | None = None
    columns: dict[str, str] = {}     # contract name -> column, as for CsvSource
    labels: dict[str, str] = {}
    extra_columns: list[str] = []    # e.g. manufacturer, site, SDOH columns


class DemoSource(StrictModel):
    """The built-in synthetic cohort (``cohorts.demo.generate_demo``), ingested as a CSV source."""

    kind: Literal["demo"]
    n_patients: int = Field(200, gt=0)
    seed: int = 0
    image_size: int = Field(256, ge=32)
    sites: int = Field(3, ge=1, le=4)  # hospitals with their own detector, laboratory, case mix; 1: none
    raw_dir: Path | None = None      # where to write the raw cohort; default OUT/raw
    workers: int = Field(1, ge=1)    # processes rendering the images (byte-identical files for any number)


SourceConfig = Annotated[
    NihSource | ChexpertSource | MimicSource | CovidChestxraySource | HannoverSource | CsvSource
    | EmorySource | DemoSource,
    Field(discriminator="kind"),
]


class SamplingConfig(StrictModel):
    """Balanced sample: ``n_per_class`` positives + negatives per (dataset, label)."""

    labels: list[str] = ["Atelectasis", "Edema", "Effusion", "Opacity"]
    n_per_class: int = Field(1000, gt=0)
    one_per_patient: bool = True
    seed: int = 0
    # other negative sets: suffix -> label whose positives (without the finding) are the negatives;
    # sample labels become <label>_vs_<suffix> (e.g. {Pneumonia: Pneumonia, NoFinding: NoFinding})
    negatives_from: dict[str, str] = {}
    min_per_class: int = Field(0, ge=0)   # fewer images in a class: left out, reported as too small (0: keep all)
    balance_to_smaller: bool = False      # short of n_per_class: cut the larger class to the smaller's size
    manifest_sampled_only: bool = False   # keep only sampled images in manifest.parquet (nothing else is embedded)


class CohortsConfig(StrictModel):
    """Config of the cohorts stage: sources -> one manifest, clinical table, sample, overview."""

    sources: list[SourceConfig] = Field(min_length=1)
    views: list[str] | None = list(FRONTAL_VIEWS)   # keep only these views; null keeps every view
    uncertain: Literal["ignore", "zeros", "ones"] = "ignore"
    deduplicate: bool = True          # drop covid-chestxray copies of Hannover images (keep Hannover's)
    check_files: bool = True          # every listed image must exist (missing -> errors.csv)
    verify_images: bool = False       # also decode each image (slow; bad files -> errors.csv)
    allow_empty_sources: bool = False  # go on when a source yields no usable image (default: stop with an error)
    sampling: SamplingConfig | None = None
    overview: bool = True

    @model_validator(mode="after")
    def _unique_datasets(self) -> CohortsConfig:
        kinds = [s.kind for s in self.sources if s.kind not in ("csv", "emory")]
        dup = sorted({k for k in kinds if kinds.count(k) > 1})
        if dup:
            raise ValueError(f"source kind(s) {dup} listed twice; give each dataset once")
        return self
