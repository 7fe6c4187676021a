"""Chest-radiograph-like phantoms with visible findings, for the synthetic demo cohort.

:func:`render_phantom` draws one frontal image from a :class:`PhantomSpec`: body, two lungs,
mediastinum and heart, spine, ribs and clavicles, diaphragm domes and a gastric bubble, then the
findings the spec asks for, each localised the way a radiologist would look for it:

* effusion: fluid filling the lung base up to a meniscus that rises towards the lateral chest wall,
  so the costophrenic angle is blunted (supine views add a layering veil over the hemithorax);
* opacity: patchy airspace density (a thresholded smooth random field) in one lobe (focal) or in
  the peripheral and lower zones of both lungs (diffuse);
* edema: bilateral perihilar ("bat-wing") haze, Kerley-B-like short horizontal lines at the lateral
  bases and a wider heart;
* atelectasis: a plate-like linear band in the lower zone plus volume loss on that side (elevated
  hemidiaphragm, mediastinal shift towards it).

Coordinates are normalised to ``[-1, 1]`` (x: image left -> right = patient right -> left,
y: top -> bottom), so the same spec renders the same anatomy at any size. Output: ``(size, size)``
uint8, higher = denser (bone white), like a displayed radiograph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

SIDES = ("right", "left")   # patient sides; the patient's right lung is on the image left (x < 0)
ZONES = ("upper", "middle", "lower")
_ZONE_Y = {"upper": -0.42, "middle": -0.05, "lower": 0.3}
_SIGN = {"right": -1.0, "left": 1.0}
LUNG_CX, LUNG_AX = 0.37, 0.28   # lung centre |x| and half-width

# Densities (roughly attenuation along the beam, display scale 0..1). Findings fill a fraction of
# the aerated lung (fluid, cells, collapse), which removes that fraction of LUNG_AIR.
AIR_OUTSIDE, SOFT_TISSUE, LUNG_AIR = 0.04, 0.5, 0.33
BONE_RIB, BONE_SPINE, BONE_CLAVICLE = 0.07, 0.08, 0.12
MAX_FILLING = 0.92


@dataclass(frozen=True)
class PhantomSpec:
    """Everything that decides one phantom image (findings are ground truth for what is drawn).

    ``severity`` in [0, 1] scales the extent and density of every finding drawn. ``opacity_sides``
    empty means no opacity; ``opacity_diffuse`` spreads it over both lungs' peripheral/lower zones,
    otherwise it is focal in ``opacity_zone``. ``view`` is ``PA``, ``AP`` or ``AP Supine``.
    ``texture_seed`` seeds noise, lung markings and the patchy pattern.
    """

    view: str = "AP"
    severity: float = 0.5
    effusion_sides: tuple[str, ...] = ()
    opacity_sides: tuple[str, ...] = ()
    opacity_zone: str = "lower"
    opacity_diffuse: bool = False
    edema: bool = False
    atelectasis_side: str | None = None
    # per-patient habitus and per-image positioning
    thorax_width: float = 1.0
    rotation_deg: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    exposure: float = 1.0
    # detector / processing of the acquiring site: contrast about mid-grey, quantum noise SD and its
    # grain (correlation length in pixels at 256 px; 0: white noise)
    contrast: float = 1.0
    noise_sd: float = 0.015
    noise_grain: float = 0.0
    texture_seed: int = 0


def _soft(signed: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of ``signed > 0`` with an edge ``width`` wide (normalised units)."""
    return 0.5 * (1.0 + np.tanh(signed / width))


def _comb(v: np.ndarray, spacing: float, width: float) -> np.ndarray:
    """Thin parallel lines at ``v = k * spacing`` (k integer), Gaussian profile ``width`` wide."""
    d = v / spacing
    return np.exp(-(((d - np.rint(d)) * spacing / width) ** 2))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_frac: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field; correlation length ``sigma_frac`` of the image width.

    Gaussian low-pass of white noise in Fourier space (periodic), so the cost does not grow with
    the correlation length.
    """
    sigma = sigma_frac * shape[1]
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    transfer = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    noise = rng.standard_normal(shape, dtype=np.float32)
    field = np.fft.irfft2(np.fft.rfft2(noise) * transfer.astype(np.float32), s=shape)
    return (field - field.mean()) / (field.std() + 1e-12)


class _Geometry:
    """Grid plus anatomy masks for one spec (lungs, heart, domes) in normalised coordinates."""

    def __init__(self, spec: PhantomSpec, size: int) -> None:
        lin = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)   # float32: 2x faster
        y0, x0 = np.meshgrid(lin, lin, indexing="ij")
        cos, sin = math.cos(math.radians(spec.rotation_deg)), math.sin(math.radians(spec.rotation_deg))
        xs, ys = x0 - spec.shift[0], y0 - spec.shift[1]
        self.x = (cos * xs + sin * ys) / spec.thorax_width
        self.y = -sin * xs + cos * ys
        self.edge = 2.5 / size  # anti-aliasing width: ~1 pixel
        shift_to = _SIGN[spec.atelectasis_side] * 0.04 if spec.atelectasis_side else 0.0
        heart_ax = 0.3 * (1.1 if spec.view != "PA" else 1.0) * (1.1 if spec.edema else 1.0)
        self.lung: dict[str, np.ndarray] = {}
        self.dome: dict[str, np.ndarray] = {}
        for side in SIDES:
            cx, ax, ay, cy = _SIGN[side] * LUNG_CX, LUNG_AX, 0.7, -0.05
            lift = 0.05 + 0.1 * spec.severity if spec.atelectasis_side == side else 0.0   # volume loss
            d0 = (0.40 if side == "right" else 0.46) - lift
            self.dome[side] = d0 + 0.2 * ((self.x - cx) / ax) ** 2   # convex upwards, lowest laterally
            exponent = np.where(self.y > cy, 5.0, 2.2)               # rounded apex, deep lateral recesses
            inside = 1.0 - np.abs((self.x - cx) / ax) ** 3 - np.abs((self.y - cy) / ay) ** exponent.astype(np.float32)
            self.lung[side] = _soft(inside, 3 * self.edge) * _soft(self.dome[side] - self.y, self.edge)
        dx, dy = self.x - (0.07 + shift_to), self.y - 0.27
        heart = 1.0 - ((dx * 0.94 + dy * 0.34) / heart_ax) ** 2 - ((dy * 0.94 - dx * 0.34) / 0.28) ** 2
        knob = 1.0 - ((self.x - 0.1) ** 2 + (self.y + 0.3) ** 2) / 0.07**2
        below = _soft(0.8 * heart_ax - np.abs(dx), 4 * self.edge) * _soft(dy, 4 * self.edge)   # heart rests on the diaphragm
        self.heart = np.maximum(np.maximum(_soft(heart, 4 * self.edge), _soft(knob, 4 * self.edge)), below)
        self.lungs = (self.lung["right"] + self.lung["left"]) * (1.0 - self.heart)   # lung not behind the heart
        self.body = _soft(1.0 - np.abs(self.x / 0.93) ** 4 - np.abs((self.y - 0.15) / 1.3) ** 4, self.edge)

    def side(self, side: str) -> np.ndarray:
        """Soft indicator of one patient side (image left = patient right)."""
        return _soft(_SIGN[side] * self.x, 0.02)


# ----------------------------------------------------------------- anatomy
def _bones(g: _Geometry) -> np.ndarray:
    u = np.abs(g.x)
    spine = BONE_SPINE * _soft(0.07 - u, 3 * g.edge) * (0.7 + 0.3 * np.cos(np.pi * g.y / 0.075) ** 2)
    rib_axis = g.y + 0.82 - 0.55 * (u - 0.22) ** 2           # posterior ribs curve down laterally
    ribs = _comb(rib_axis, 0.13, 0.024) * _soft(rib_axis + 0.04, 0.02) * _soft(1.28 - rib_axis, 0.02)
    lateral = _soft(u - 0.06, g.edge) * _soft(0.8 - u, 4 * g.edge)
    clavicle = np.exp(-(((g.y - (-0.74 + 0.12 * u - 0.2 * u**2)) / 0.03) ** 2)) * _soft(0.55 - u, 4 * g.edge)
    over_lung = 0.35 + 0.65 * g.lungs   # ribs stand out against aerated lung
    return spine + (BONE_RIB * ribs * lateral * over_lung + BONE_CLAVICLE * clavicle * _soft(u - 0.04, g.edge)) * g.body


def _tissue(g: _Geometry) -> np.ndarray:
    """Soft tissue (thicker centrally), bones and the gastric air bubble: everything but lung air."""
    thickness = np.sqrt(np.clip(1.0 - (g.x / 0.95) ** 2, 0.0, 1.0))
    density = AIR_OUTSIDE + (SOFT_TISSUE - AIR_OUTSIDE) * g.body * (0.55 + 0.45 * thickness)
    top = float(g.dome["left"].min())   # the bubble sits under the left hemidiaphragm
    bubble = 1.0 - ((g.x - 0.33) / 0.1) ** 2 - ((g.y - top - 0.14) / 0.06) ** 2
    density -= 0.18 * _soft(bubble, 3 * g.edge) * _soft(g.y - g.dome["left"], g.edge)
    return density + _bones(g)


# ----------------------------------------------------------------- findings (filled fraction of lung)
def _effusion(g: _Geometry, spec: PhantomSpec, side: str) -> np.ndarray:
    s, cx = _SIGN[side], _SIGN[side] * LUNG_CX
    lateral = np.clip(s * (g.x - cx) / LUNG_AX * 0.5 + 0.5, 0.0, 1.0)   # 0 medial .. 1 lateral wall
    recess = g.dome[side].min() + 0.2                                   # depth of the lateral recess
    surface = recess - (0.12 + 0.4 * spec.severity) - 0.16 * lateral**3  # meniscus rises laterally
    fluid = 0.88 * _soft(g.y - surface, 0.02)
    if spec.view == "AP Supine":                                        # layering: veil, denser low
        fluid = fluid + (0.12 + 0.2 * spec.severity) * np.clip(0.5 + g.y, 0.0, 1.0)
    return fluid * g.side(side)


def _opacity(g: _Geometry, spec: PhantomSpec, rng: np.random.Generator) -> np.ndarray:
    patch = _soft(_smooth_field(rng, g.x.shape, 0.02) + 0.5, 0.8)
    sev = spec.severity
    envelope = np.zeros_like(g.x)
    for side in spec.opacity_sides:
        s, cx = _SIGN[side], _SIGN[side] * LUNG_CX
        if spec.opacity_diffuse:   # peripheral and lower zones, spreading medially and upwards with severity
            envelope += _soft(s * (g.x - cx) + 0.05 + 0.25 * sev, 0.12) * _soft(g.y + 0.15 + 0.5 * sev, 0.2) * g.side(side)
        else:                      # one lobe
            r = 0.1 + 0.3 * sev
            cy = _ZONE_Y[spec.opacity_zone]
            envelope += np.exp(-(((g.x - cx - s * 0.04) / r) ** 2) - ((g.y - cy) / (0.8 * r)) ** 2)
    return (0.5 + 0.5 * sev) * np.clip(envelope, 0.0, 1.0) * (0.5 + 0.5 * patch)


def _edema(g: _Geometry, spec: PhantomSpec, rng: np.random.Generator) -> np.ndarray:
    haze = (0.3 + 0.4 * spec.severity) * np.exp(-(((np.abs(g.x) - 0.12) / 0.24) ** 2) - ((g.y - 0.05) / 0.32) ** 2)
    # Kerley-B lines: short horizontal lines reaching the lateral pleura of both lower zones
    level = (g.y - 0.08) / 0.05
    lengths = rng.uniform(0.04, 0.1, size=9).astype(np.float32)[np.clip(np.rint(level), 0, 8).astype(int)]
    wall = LUNG_CX + LUNG_AX - 0.01
    lines = _comb(g.y - 0.08, 0.05, max(0.007, 0.5 * g.edge)) * _soft(level + 0.3, 0.05) * _soft(8.3 - level, 0.05)
    lines = lines * _soft(np.abs(g.x) - (wall - lengths), g.edge)
    return haze + 0.7 * lines


def _atelectasis(g: _Geometry, spec: PhantomSpec, rng: np.random.Generator) -> np.ndarray:
    side = spec.atelectasis_side
    s = _SIGN[side]
    x1, x2 = s * 0.18, s * 0.6
    y1 = g.dome[side].min() - rng.uniform(0.1, 0.18)
    y2 = y1 + rng.uniform(-0.08, 0.02)
    t = (g.x - x1) / (x2 - x1)
    centre = y1 + np.clip(t, 0.0, 1.0) * (y2 - y1)
    band = np.exp(-(((g.y - centre) / (0.015 + 0.02 * spec.severity)) ** 2)) * _soft(0.5 - np.abs(t - 0.5), 0.05)
    return 0.9 * band


# ----------------------------------------------------------------- image
def render_phantom(spec: PhantomSpec, *, size: int = 256) -> np.ndarray:
    """Render ``spec`` as an ``(size, size)`` uint8 radiograph-like image (higher = denser)."""
    # separate streams: adding a finding never changes the anatomy's noise and markings
    anatomy_rng, finding_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.texture_seed).spawn(2))
    g = _Geometry(spec, size)
    filling = np.zeros_like(g.x)
    for side in spec.effusion_sides:
        filling += _effusion(g, spec, side)
    if spec.opacity_sides:
        filling += _opacity(g, spec, finding_rng)
    if spec.edema:
        filling += _edema(g, spec, finding_rng)
    if spec.atelectasis_side:
        filling += _atelectasis(g, spec, finding_rng)
    aerated = g.lungs * (1.0 - np.clip(filling, 0.0, MAX_FILLING))
    hilum = np.exp(-(((np.abs(g.x) - 0.15) / 0.25) ** 2) - (g.y / 0.35) ** 2)
    markings = 0.035 * np.abs(_smooth_field(anatomy_rng, g.x.shape, 0.012)) * (0.4 + hilum)   # vessels
    density = _tissue(g) + (markings - LUNG_AIR) * aerated
    density = gaussian_filter(density, sigma=0.6 * size / 256, mode="nearest")
    tone = np.clip(density, 0.0, 1.0) ** spec.exposure   # exposure < 1 brightens, > 1 darkens
    if spec.contrast != 1.0:
        tone = 0.5 + spec.contrast * (tone - 0.5)
    noise = anatomy_rng.standard_normal(tone.shape, dtype=np.float32)
    if spec.noise_grain > 0:   # correlated detector noise (e.g. computed radiography plates), unit SD again
        noise = gaussian_filter(noise, sigma=spec.noise_grain * size / 256, mode="wrap")
        noise /= noise.std() + 1e-12
    tone += spec.noise_sd * noise + 0.02 * _smooth_field(anatomy_rng, tone.shape, 0.2)
    return np.clip(np.rint(tone * 255.0), 0, 255).astype(np.uint8)
