"""CXR Foundation (ELIXR v2) on TensorFlow: tiny random-weight SavedModels written in the release's layout
(``elixr-c-v2-pooled/`` and ``pax-elixr-b-text/``, ``serving_default`` signatures with the official input and
output keys and shapes), loaded through ``get_embedder`` and compared with a numpy forward written here from
the 16-bit PNG ``tf.Example`` recipe of the official ``np_to_tfexample`` (so a wrong bit depth, scaling,
transposed PNG or missing feature cannot pass). Skipped when TensorFlow is not installed."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from embedders.base import get_embedder
from embedders.foundation import cxr_foundation
from embedders.foundation._weights import MissingDependencyError, WeightsMismatchError

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install 'cxr-fusion[tensorflow]')")

GRID, CHANNELS, QUERIES, WIDTH, CONTRASTIVE, RANK, VOCAB = 8, 1376, 32, 768, 128, 8, 64   # release shapes


def _weights(seed: int = 0, width: int = WIDTH) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    draw = lambda *shape: (rng.standard_normal(shape) * 0.5).astype(np.float32)  # noqa: E731
    return {"w": draw(3, CHANNELS), "b": draw(CHANNELS), "queries": draw(QUERIES, CHANNELS),
            "position": draw(GRID * GRID, CHANNELS),
            "down": draw(CHANNELS, RANK), "up": draw(RANK, width), "contrastive": draw(width, CONTRASTIVE),
            "text": draw(VOCAB, CONTRASTIVE)}


class TinyElixrC(tf.Module):
    """serialized tf.Example (16-bit PNG) -> (B, 8, 8, 1376): bilinear 8 x 8 grid + image mean/std, per channel."""

    def __init__(self, p: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.w, self.b = tf.Variable(p["w"]), tf.Variable(p["b"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="input_example")])
    def serve(self, input_example: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(input_example, {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                                                     "image/format": tf.io.FixedLenFeature([], tf.string)})
        tf.debugging.assert_equal(parsed["image/format"], tf.constant("png"))

        def one(png: tf.Tensor) -> tf.Tensor:
            image = tf.cast(tf.io.decode_png(png, channels=1, dtype=tf.uint16), tf.float32) / 65535.0
            grid = tf.image.resize(image, (GRID, GRID), method="bilinear", antialias=False)
            stats = tf.ones_like(grid) * tf.stack([tf.reduce_mean(image), tf.math.reduce_std(image)])
            return tf.concat([grid, stats], axis=-1)

        inputs = tf.map_fn(one, parsed["image/encoded"], fn_output_signature=tf.TensorSpec([GRID, GRID, 3]))
        return {"feature_maps_0": tf.tanh(tf.einsum("bhwk,kc->bhwc", inputs, self.w) + self.b)}


class TinyQFormer(tf.Module):
    """(image_feature, ids, paddings) -> img_emb (B, 32, width), all_contrastive_img_emb (B, 32, 128),
    contrastive_txt_emb (B, 128): one cross-attention of 32 learned queries over the 64 grid cells (+ position)."""

    def __init__(self, p: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.p = {k: tf.Variable(p[k]) for k in ("queries", "position", "down", "up", "contrastive", "text")}

    @tf.function(input_signature=[tf.TensorSpec([None, GRID, GRID, CHANNELS], tf.float32, name="image_feature"),
                                  tf.TensorSpec([None, 1, 128], tf.int32, name="ids"),
                                  tf.TensorSpec([None, 1, 128], tf.float32, name="paddings")])
    def serve(self, image_feature: tf.Tensor, ids: tf.Tensor, paddings: tf.Tensor) -> dict[str, tf.Tensor]:
        p = self.p
        cells = tf.reshape(image_feature, [-1, GRID * GRID, CHANNELS]) + p["position"]
        attention = tf.nn.softmax(tf.einsum("qc,bnc->bqn", p["queries"], cells) / CHANNELS ** 0.5, axis=-1)
        tokens = tf.einsum("bqn,bnc->bqc", attention, cells)
        image = tf.einsum("bqc,cr,rd->bqd", tokens, p["down"], p["up"])
        words = tf.gather(p["text"], ids[:, 0] % VOCAB) * (1.0 - paddings[:, 0, :, None])
        return {"img_emb": image,
                "all_contrastive_img_emb": tf.math.l2_normalize(tf.einsum("bqd,dk->bqk", image, p["contrastive"]), -1),
                "contrastive_txt_emb": tf.math.l2_normalize(tf.reduce_sum(words, axis=1), -1)}


def write_release(folder: Path, p: dict[str, np.ndarray]) -> Path:
    """``elixr-c-v2-pooled/`` + ``pax-elixr-b-text/`` SavedModels (saved_model.pb, variables/) in ``folder``."""
    for name, module in ((cxr_foundation.ELIXR_C, TinyElixrC(p)), (cxr_foundation.ELIXR_B, TinyQFormer(p))):
        tf.saved_model.save(module, str(folder / name), signatures={"serving_default": module.serve})
    return folder


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    p = _weights()
    return write_release(tmp_path_factory.mktemp("cxr-foundation"), p), p


def _bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """TF2 ``tf.image.resize(bilinear, antialias=False)``: half-pixel centres, edge clamp, float64."""
    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.maximum((np.arange(size) + 0.5) * n / size - 0.5, 0.0)
        low = np.floor(x).astype(int)
        return low, np.minimum(low + 1, n - 1), x - low
    (y0, y1, fy), (x0, x1, fx) = axis(image.shape[0]), axis(image.shape[1])
    rows = image[y0] * (1 - fy)[:, None] + image[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


def _reference(image: np.ndarray, p: dict[str, np.ndarray], key: str) -> np.ndarray:
    """The official float -> uint16 recipe (written out here), then the tiny models in numpy (float64)."""
    pixels = image.astype(np.float32) - image.min()
    pixels = (pixels * (65535 / pixels.max())).astype(np.uint16).astype(np.float64) / 65535
    grid = _bilinear(pixels, GRID)[..., None]
    inputs = np.concatenate([grid, np.full_like(grid, pixels.mean()), np.full_like(grid, pixels.std())], -1)
    cells = np.tanh(inputs @ p["w"] + p["b"]).reshape(GRID * GRID, CHANNELS) + p["position"]
    logits = p["queries"] @ cells.T / CHANNELS ** 0.5
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    emb = attention @ cells @ p["down"] @ p["up"]
    if key == "img_emb":
        return emb
    contrastive = emb @ p["contrastive"]
    return contrastive / np.linalg.norm(contrastive, axis=-1, keepdims=True)


@pytest.mark.parametrize(("name", "key", "shape"), [("cxr-foundation", "img_emb", (QUERIES, WIDTH)),
                                                    ("cxr-foundation-contrastive", "all_contrastive_img_emb",
                                                     (QUERIES, CONTRASTIVE))])
def test_tiny_release_matches_16bit_png_reference(release, xray: np.ndarray, name: str, key: str,
                                                  shape: tuple[int, int]) -> None:
    folder, p = release
    embedder = get_embedder(name, weights=folder)
    assert embedder.info.output_shape == shape
    # real images of different sizes and aspect ratios (a transposed PNG would not match the reference), one
    # in [0.25, 0.75] (a recipe without the min shift and 65535 / max stretch would not match)
    images = [xray, np.ascontiguousarray(0.75 - 0.5 * xray[: xray.shape[0] * 2 // 3, ::-1])]
    batch = embedder.collate([embedder.preprocess(image) for image in images])
    out = embedder.forward(batch)
    assert out.dtype == torch.float32 and tuple(out.shape) == (2, *shape)
    torch.testing.assert_close(embedder.forward(batch), out, rtol=0, atol=0)
    for row, image in zip(out.numpy(), images):
        np.testing.assert_allclose(row, _reference(image, p, key), rtol=1e-4, atol=2e-5)
    assert not np.allclose(out[0].numpy(), out[1].numpy(), atol=1e-3)


def test_checksum_covers_every_savedmodel_file(release, tmp_path: Path) -> None:
    folder, _ = release
    embedder = get_embedder("cxr-foundation", weights=folder)
    lines = sorted(f"{f.relative_to(folder).as_posix()} {hashlib.sha256(f.read_bytes()).hexdigest()}\n"
                   for f in folder.rglob("*") if f.is_file())
    assert any(line.startswith(f"{cxr_foundation.ELIXR_B}/variables/") for line in lines)
    assert embedder.weights_sha256 == "savedmodel:" + hashlib.sha256("".join(lines).encode()).hexdigest()
    assert embedder.provenance()["weights_sha256"] == embedder.weights_sha256
    other = write_release(tmp_path, _weights(seed=1))
    assert get_embedder("cxr-foundation", weights=other).weights_sha256 != embedder.weights_sha256


def test_hugging_face_cache_layout(release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``huggingface-cli download google/cxr-foundation`` cache (snapshot files are links to blobs) is found
    without --weights and gives the same checksum as the plain folder."""
    folder, _ = release
    repo = tmp_path / "hub" / "models--google--cxr-foundation"
    (repo / "blobs").mkdir(parents=True)
    for path in (f for f in folder.rglob("*") if f.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.write_bytes(path.read_bytes())
        link = repo / "snapshots" / "abc123" / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    embedder = get_embedder("cxr-foundation-contrastive")
    assert embedder.weights_sha256 == get_embedder("cxr-foundation", weights=folder).weights_sha256
    assert tuple(embedder.forward([torch.zeros(40, 30, dtype=torch.int32)]).shape) == (1, QUERIES, CONTRASTIVE)


def test_wrong_output_shape_is_one_line(tmp_path: Path) -> None:
    """A Q-Former whose img_emb is not 32 x 768 is refused at load time, naming the output and shapes."""
    write_release(tmp_path, _weights(width=64))
    with pytest.raises(WeightsMismatchError) as err:
        get_embedder("cxr-foundation", weights=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "img_emb" in message and "768" in message and "64" in message


def test_missing_text_op_names_tensorflow_text(release, tmp_path: Path) -> None:
    """A graph using an op this TensorFlow lacks (as tensorflow-text's ops when it is not installed) gives one
    line naming the op and tensorflow-text."""
    from tensorflow.core.protobuf import saved_model_pb2

    folder, _ = release
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    graph = tmp_path / cxr_foundation.ELIXR_B / "saved_model.pb"
    proto = saved_model_pb2.SavedModel.FromString(graph.read_bytes())
    nodes = [n for f in proto.meta_graphs[0].graph_def.library.function for n in f.node_def if n.op == "Softmax"]
    assert nodes
    for node in nodes:
        node.op = "CxrFusionTestUnknownOp"
    graph.write_bytes(proto.SerializeToString())
    with pytest.raises(MissingDependencyError) as err:
        get_embedder("cxr-foundation", weights=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "CxrFusionTestUnknownOp" in message and "tensorflow-text" in message
