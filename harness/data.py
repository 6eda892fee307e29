"""The data (PROTOCOL §2): a synthetic face-age generator written in the Kaggle layout, and the
loader that reads any folder in that layout (the synthetic one or real data).

On disk, under one root folder:

    retain.csv, forget.csv, validation.csv, test.csv   columns image_id, person_id, age, age_group
    images/<person>/<n>.png                             RGB, image_size x image_size; image_id "<person>-<n>"
    meta.json                                           generator version, data hash, counts, age-group edges,
                                                        sha256 of each CSV, one digest of all images
    splits.pt, splits.json                              the packed splits, and their sha256 (written after them)

`test.csv` is the harness's own (entrants never see it). `meta.json` is written last inside a
temporary sibling folder that is then renamed into place, so a folder with `meta.json` is complete.

Integrity. Loading uses `splits.pt` only when its bytes match the sha256 in `splits.json` and the
CSVs are the ones it was packed from; otherwise the splits are rebuilt from the PNGs, and then
(only then: hashing every image costs time) the CSVs and images are checked against the digests
in `meta.json`, when it has them. A mismatch is an error for a folder you provide; the generated
data set is made again (`ensure_data`, one warning line). Generation holds a lock file,
`<cache>/.data-<hash>.lock`, so that two processes never make the same data set at once.

The generator. Each person has fixed traits that have nothing to do with age (face width, skin
tone, hair colour and style, eye colour and spacing, clothing colour and pattern, a
mole/scar/glasses at a person-specific place) and one age. Age shows through the *apparent* age: the true age plus a
per-person offset (some people look older than they are), and it drives hair greying and
thinning, wrinkles, beard, child proportions (big head and eyes, round face) and a slight skin
shift, each with its own per-person onset. So appearance tells the age group only roughly; a
model that has seen a person's images can do better by recognising the person from the
age-free traits and recalling their label. That gap between a model trained with a person and a
model trained without them is what unlearning has to close and what the forget-quality metric
measures. Each image adds nuisance (pose, scale, rotation, lighting, colour cast, background,
expression, sensor noise) so that recognising a person is not a pixel lookup.

The constants below were tuned with the DEFAULT profile's small CNN (12 epochs, 32x32): a model
trained with the forget identities reaches about 0.75-0.8 accuracy on the forget set, one
retrained without them about 0.3-0.5, and both about 0.45-0.5 on the test set. Changing any
constant changes the data: bump the version (`protocol.SYNTHETIC`, which GENERATOR_VERSION names),
so that cached data sets and the reference pools trained on them are made anew.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness import paths
from harness.protocol import SYNTHETIC, Protocol

GENERATOR_VERSION = SYNTHETIC  # named in the protocol, so that it is part of every cache key
SPLITS = ("retain", "forget", "validation", "test")
CSV_COLUMNS = ("image_id", "person_id", "age", "age_group")
PACKED_CACHE = "splits.pt"
PACKED_RECORD = "splits.json"   # {"version", "sha256" of splits.pt, "csv_sha256" it was packed from}
PACKED_CACHE_VERSION = 2

# ---- ages --------------------------------------------------------------------------------------
AGE_MIN, AGE_MAX = 1, 90              # pinned on two people so the bin edges are the same every time
CHILD_MAX_AGE = 18                    # groups 0 and 1 cover ages 1..18 with these edges
POPULATION_MIX = (0.12, 0.63, 0.25)   # children, adults, older people: most people 20-50, few very old
ADULT_AGE_MEAN, ADULT_AGE_SD, ADULT_AGE_RANGE = 35.0, 8.0, (19, 55)
OLDER_AGE_START, OLDER_AGE_SCALE = 50, 12.0   # exponential tail: the very old are rare
FORGET_YOUNG_P = 0.85                 # the forget identities are mostly children (PROTOCOL §2: non-IID)
APPARENT_AGE_SD = 6.0                 # years: how much older/younger than their age a person looks
APPARENT_AGE_SD_CHILD = 8.0           # the same for children (growth varies a lot between children)

# ---- how age shows (in apparent years) ---------------------------------------------------------
CHILD_UNTIL = 17.0                    # childness fades linearly from age 1 to here
HEAD_GROWTH_CHILD = 0.22              # a baby's head is this much larger relative to the frame
EYE_GROWTH_CHILD = 0.6                # ... and the eyes this much larger relative to the face
GREY_ONSET_MEAN, GREY_ONSET_SD, GREY_SPAN = 42.0, 7.0, 28.0
BALDING_START, BALDING_SPAN = 28.0, 45.0
WRINKLE_START, WRINKLE_SPAN = 24.0, 50.0
WRINKLE_DARKEN = 0.55                 # full-strength wrinkle lines darken the skin by this fraction
SKIN_AGE_START, SKIN_AGE_SPAN = 20.0, 70.0
SKIN_AGE_SHIFT = 0.22                 # older skin turns darker, yellower and less saturated
EYELID_DROOP = 0.35                   # upper lids cover this fraction of the eye at old age
BEARD_P, BEARD_MIN_AGE = 0.3, 16.0

# ---- per-image nuisance ------------------------------------------------------------------------
SHIFT_PIXELS = 1.0                    # max translation, in output pixels of a 32x32 image
SCALE_RANGE = (0.95, 1.05)
ROTATION_DEG = 3.0
BRIGHTNESS_RANGE = (0.85, 1.15)
CONTRAST_RANGE = (0.85, 1.15)
SIDE_LIGHT = 0.2                      # strength of a left/right light gradient
COLOUR_CAST_SD = 0.04                 # per-channel gain
NOISE_SD_RANGE = (0.005, 0.035)        # sensor noise, on the 0..1 scale
CLOTHING_JITTER = 0.03

RENDER_SIZE = 64                      # draw at >= this many pixels per side, then area-average down
CHUNK = 256                           # images rendered at once (bounds memory)

HAIR_PALETTE = np.array([[0.07, 0.05, 0.04], [0.20, 0.12, 0.07], [0.36, 0.22, 0.12], [0.55, 0.38, 0.22],
                         [0.86, 0.72, 0.42], [0.62, 0.26, 0.10], [0.45, 0.18, 0.10]], dtype=np.float32)
EYE_PALETTE = np.array([[0.30, 0.17, 0.08], [0.12, 0.07, 0.04], [0.25, 0.45, 0.80], [0.25, 0.55, 0.30],
                        [0.50, 0.40, 0.20], [0.50, 0.55, 0.60]], dtype=np.float32)
SKIN_DARK = np.array([0.34, 0.21, 0.14], dtype=np.float32)
SKIN_LIGHT = np.array([0.97, 0.82, 0.70], dtype=np.float32)
GREY_HAIR = np.array([0.80, 0.80, 0.78], dtype=np.float32)
OLD_SKIN_TINT = np.array([0.90, 0.85, 0.60], dtype=np.float32)  # times the skin's mean: duller, yellower
HAIR_STYLES = ("short", "long", "fringe", "curly")
MARKS = ("none", "mole", "scar", "glasses")
CLOTHING_PATTERNS = ("plain", "horizontal stripes", "vertical stripes", "collar")
MARK_P = (0.25, 0.3, 0.2, 0.25)


# ================================================================================================
# Identities and images (numbers only)
# ================================================================================================

def _sample_ages(n: int, n_forget: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(3, size=n, p=POPULATION_MIX)
    child = rng.integers(AGE_MIN, CHILD_MAX_AGE + 1, size=n)
    adult = np.clip(np.round(rng.normal(ADULT_AGE_MEAN, ADULT_AGE_SD, size=n)), *ADULT_AGE_RANGE)
    older = np.clip(np.round(OLDER_AGE_START + rng.exponential(OLDER_AGE_SCALE, size=n)), OLDER_AGE_START, AGE_MAX)
    ages = np.choose(kind, [child, adult, older]).astype(np.int64)
    # The forget set is biased young: the lowest person indices are mostly children.
    young = rng.random(n) < FORGET_YOUNG_P
    forget = np.arange(n) < n_forget
    ages[forget & young] = child[forget & young]
    if n >= n_forget + 2:
        ages[n - 2], ages[n - 1] = AGE_MIN, AGE_MAX
    return ages


def _sample_identities(protocol: Protocol) -> dict[str, np.ndarray]:
    """Per-person traits. Age-free traits are what lets a model recognise (memorise) a person."""
    rng = np.random.default_rng([protocol.data_seed, 1])
    n = protocol.n_identities
    ages = _sample_ages(n, protocol.n_forget_identities, rng)
    f32 = np.float32
    ids = {
        "age": ages,
        "apparent_age": np.clip(ages + rng.normal(0, 1, n) * np.where(ages <= CHILD_MAX_AGE, APPARENT_AGE_SD_CHILD,
                                                                         APPARENT_AGE_SD), 0, 100).astype(f32),
        "face_width": rng.uniform(0.88, 1.12, n).astype(f32),
        "skin": (SKIN_DARK + rng.uniform(0, 1, (n, 1)) * (SKIN_LIGHT - SKIN_DARK)
                 + rng.normal(0, 0.03, (n, 3))).astype(f32),
        "hair": (HAIR_PALETTE[rng.integers(0, len(HAIR_PALETTE), n)] + rng.normal(0, 0.04, (n, 3))).astype(f32),
        "hair_style": rng.integers(0, len(HAIR_STYLES), n),
        "eye": (EYE_PALETTE[rng.integers(0, len(EYE_PALETTE), n)] + rng.normal(0, 0.03, (n, 3))).astype(f32),
        "eye_spacing": rng.uniform(0.14, 0.21, n).astype(f32),
        "clothing": rng.uniform(0.05, 0.95, (n, 3)).astype(f32),
        "mark": rng.choice(len(MARKS), size=n, p=MARK_P),
        "mark_x": rng.uniform(-0.28, 0.28, n).astype(f32),
        "mark_y": rng.uniform(-0.15, 0.35, n).astype(f32),
        "mark_angle": rng.uniform(0, np.pi, n).astype(f32),
        "glasses_colour": rng.uniform(0.0, 0.8, (n, 3)).astype(f32),
        # Per-person onsets: the same age does not look the same on everyone.
        "grey_onset": rng.normal(GREY_ONSET_MEAN, GREY_ONSET_SD, n).astype(f32),
        "balding": (rng.uniform(0, 1, n) ** 2).astype(f32),
        "wrinkliness": rng.uniform(0.5, 1.3, n).astype(f32),
        "beard": rng.random(n) < BEARD_P,
        "clothing2": rng.uniform(0.05, 0.95, (n, 3)).astype(f32),
        "clothing_pattern": rng.integers(0, len(CLOTHING_PATTERNS), n),
    }
    return ids


def _sample_images(protocol: Protocol, ids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per image: its person, its number within the person, and its nuisance."""
    rng = np.random.default_rng([protocol.data_seed, 2])
    lo, hi = protocol.images_per_identity
    counts = rng.integers(lo, hi + 1, size=protocol.n_identities)
    person = np.repeat(np.arange(protocol.n_identities), counts)
    number = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
    m = len(person)
    f32 = np.float32
    shift = SHIFT_PIXELS / 32 * 2  # in normalised units ([-1, 1] across the image)
    return {
        "person": person, "number": number,
        "tx": rng.uniform(-shift, shift, m).astype(f32), "ty": rng.uniform(-shift, shift, m).astype(f32),
        "scale": rng.uniform(*SCALE_RANGE, m).astype(f32),
        "rotation": np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG, m)).astype(f32),
        "background": rng.uniform(0.1, 0.9, (m, 3)).astype(f32),
        "background_slope": rng.uniform(-0.15, 0.15, m).astype(f32),
        "clothing_jitter": rng.normal(0, CLOTHING_JITTER, (m, 3)).astype(f32),
        "smile": rng.uniform(-1, 1, m).astype(f32), "mouth_open": rng.uniform(0, 1, m).astype(f32) ** 2,
        "brightness": rng.uniform(*BRIGHTNESS_RANGE, m).astype(f32),
        "contrast": rng.uniform(*CONTRAST_RANGE, m).astype(f32),
        "side_light": rng.uniform(-SIDE_LIGHT, SIDE_LIGHT, m).astype(f32),
        "cast": rng.normal(1, COLOUR_CAST_SD, (m, 3)).astype(f32),
        "noise_sd": rng.uniform(*NOISE_SD_RANGE, m).astype(f32),
        "noise_seed": rng.integers(0, 2**31, m),
    }


# ================================================================================================
# Rendering: one function per visual element. Arrays are [n, R, R] (masks, coordinates) and
# [3, n, R, R] (canvas, channel-first so that every channel is one contiguous block); per-image
# scalars arrive as [n, 1, 1] and colours as [3, n, 1, 1].
# ================================================================================================

def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Put `colour` on `canvas` where `mask` says: a boolean mask paints opaquely, a float mask
    (0..1) alpha-blends."""
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 1:  # one colour for every image
        colour = colour.reshape(3, 1, 1, 1)
    if mask.dtype == bool:
        np.copyto(canvas, colour, where=mask[None])
        return
    delta = colour - canvas
    delta *= mask[None]
    canvas += delta


# The two shape tests below run on every pixel of every image many times: in-place arithmetic
# keeps them to a few passes over memory.

def _ellipse(x, y, cx, cy, ax, ay):
    a = x - cx
    a *= 1 / ax
    a *= a
    b = y - cy
    b *= 1 / ay
    b *= b
    a += b
    return a < 1


def _segment(x, y, x0, y0, x1, y1, half_width):
    """Mask of points within half_width of the segment (x0,y0)-(x1,y1)."""
    dx, dy = x1 - x0, y1 - y0
    px, py = x - x0, y - y0
    t = px * (dx / (dx * dx + dy * dy + 1e-9))
    t += py * (dy / (dx * dx + dy * dy + 1e-9))
    np.clip(t, 0, 1, out=t)
    px -= t * dx
    py -= t * dy
    px *= px
    py *= py
    px += py
    return px < half_width ** 2


def _paint_background(canvas, y, colour, slope):
    # Each photo has its own backdrop (colour and a vertical gradient): a large area the model
    # must learn to ignore, so that it attends to the person.
    canvas[:] = colour * (1 + slope * y)[None]


def _paint_torso(canvas, u, v, clothing, clothing2, pattern, childness):
    # Children have narrower shoulders relative to the frame. People wear their own clothes: a
    # colour and a pattern in a second colour, a large pose-robust identity cue.
    width = 0.85 - 0.25 * childness
    body = _ellipse(u, v, 0, 1.08, width, 0.48)
    _paint(canvas, body, clothing)
    stripes_h = (pattern == CLOTHING_PATTERNS.index("horizontal stripes")) & (np.sin(v * 40) > 0.3)
    stripes_v = (pattern == CLOTHING_PATTERNS.index("vertical stripes")) & (np.sin(u * 40) > 0.3)
    collar = (pattern == CLOTHING_PATTERNS.index("collar")) & (np.abs(u) < 0.3) & (v < 0.78)
    _paint(canvas, body & (stripes_h | stripes_v | collar), clothing2)


def _paint_neck(canvas, u, v, skin, head):
    neck = (np.abs(u) < 0.13 * head) & (v > -0.1) & (v < 0.75)
    _paint(canvas, neck, skin * 0.85)


def _face_axes(face_width, childness):
    # A child's face is rounder: wider relative to its height.
    return 0.39 * face_width + 0.05 * childness, 0.52 - 0.05 * childness


def _paint_hair_behind(canvas, fx, fy, hair, style, density, face_width, childness):
    # Long hair falls behind the face down to the shoulders.
    ax, ay = _face_axes(face_width, childness)
    long_hair = (style == HAIR_STYLES.index("long"))
    mask = _ellipse(fx, fy, 0, 0.1, ax + 0.12, ay + 0.25) & (fy > -0.1) & long_hair
    _paint(canvas, mask * density, hair)


def _paint_face(canvas, fx, fy, skin, face_width, childness):
    ax, ay = _face_axes(face_width, childness)
    _paint(canvas, _ellipse(fx, fy, 0, 0, ax, ay), skin)
    # The scalp shows wherever the hair has thinned or receded.
    _paint(canvas, (_ellipse(fx, fy, 0, -0.04, ax + 0.05, ay + 0.06) & (fy < -0.2)), skin)


def _paint_hair(canvas, fx, fy, hair, style, density, recession, face_width, childness):
    ax, ay = _face_axes(face_width, childness)
    curly = style == HAIR_STYLES.index("curly")
    fringe = style == HAIR_STYLES.index("fringe")
    # The hair cap: a larger ellipse than the head, bigger for curly hair.
    cap = _ellipse(fx, fy, 0, -0.06, ax + 0.07 + 0.08 * curly, ay + 0.09 + 0.07 * curly)
    # Hairline: where the forehead starts; a fringe hangs lower, balding pushes it back.
    hairline = np.where(fringe, -0.2, -0.32) - 0.28 * recession
    in_face = _ellipse(fx, fy, 0, 0, ax, ay)
    sides = np.where(style == HAIR_STYLES.index("long"), 0.1, -0.12)
    mask = cap & (fy < sides) & (~in_face | (fy < hairline))
    # Balding also thins the crown before the sides.
    top = (fy < -0.3) & (np.abs(fx) < ax * 0.7)
    alpha = density * np.where(top, 1 - 0.8 * recession, 1.0)
    _paint(canvas, mask * alpha, hair)


def _paint_eyes(canvas, fx, fy, eye, spacing, childness, skin, droop):
    # Children's eyes are large relative to the face; with age the upper lids droop over them.
    r = 0.055 * (1 + EYE_GROWTH_CHILD * childness)
    for side in (-1, 1):
        cx = side * spacing
        white = _ellipse(fx, fy, cx, -0.04, r * 1.6, r * 1.05)
        _paint(canvas, white, np.array([0.95, 0.95, 0.93], np.float32))
        _paint(canvas, _ellipse(fx, fy, cx, -0.04, r, r), eye)
        _paint(canvas, _ellipse(fx, fy, cx, -0.04, r * 0.45, r * 0.45), np.array([0.02, 0.02, 0.02], np.float32))
        _paint(canvas, white & (fy < -0.04 - r * 1.05 + 2 * r * 1.05 * droop), skin * 0.92)


def _paint_eyebrows(canvas, fx, fy, hair, spacing):
    mask = np.zeros(fx.shape, bool)
    for side in (-1, 1):
        mask |= _segment(fx, fy, side * (spacing - 0.07), -0.15, side * (spacing + 0.08), -0.16, 0.022)
    _paint(canvas, mask, hair)


def _paint_wrinkles(canvas, fx, fy, spacing, strength):
    # Lines appear one after another as `strength` grows (nose-to-mouth folds first, then crow's
    # feet, then forehead lines, then bags under the eyes), and each darkens as it deepens: a count
    # and a contrast cue that survive down-sampling better than a fine texture would.
    darken = np.zeros(fx.shape, np.float32)

    def add(mask, onset):
        depth = np.clip((strength - onset) / (1 - onset), 0, 1)
        np.maximum(darken, mask * (WRINKLE_DARKEN * np.sqrt(depth)), out=darken)

    folds = crows = bags = np.zeros(fx.shape, bool)
    for side in (-1, 1):
        folds = folds | _segment(fx, fy, side * 0.09, 0.1, side * 0.18, 0.32, 0.022)
        x0 = side * (spacing + 0.1)
        crows = crows | _segment(fx, fy, x0, -0.05, x0 + side * 0.08, -0.1, 0.02)
        crows = crows | _segment(fx, fy, x0, -0.01, x0 + side * 0.08, 0.03, 0.02)
        bags = bags | (_ellipse(fx, fy, side * spacing, 0.04, 0.09, 0.035) & (fy > 0.04))
    add(folds, 0.0)
    add(crows, 0.2)
    for k, y in enumerate((-0.25, -0.3, -0.2)):
        add(_segment(fx, fy, -0.2, y, 0.2, y, 0.02), 0.3 + 0.15 * k)
    add(bags, 0.6)
    canvas *= 1 - darken[None]


def _paint_cheeks(canvas, fx, fy, spacing, childness):
    # Rosy cheeks, mostly on young children.
    mask = np.zeros(fx.shape, bool)
    for side in (-1, 1):
        mask |= _ellipse(fx, fy, side * (spacing + 0.04), 0.14, 0.08, 0.05)
    _paint(canvas, mask * 0.35 * childness, np.array([0.95, 0.45, 0.45], np.float32))


def _paint_mouth(canvas, fx, fy, smile, mouth_open):
    # Expression (per image): the mouth's curve and opening.
    half = 0.13
    t = np.clip(fx / half, -1, 1)
    centre = 0.3 + 0.07 * smile * (1 - t ** 2)
    thickness = 0.02 + 0.04 * mouth_open
    mask = (np.abs(fx) < half) & (np.abs(fy - centre) < thickness)
    _paint(canvas, mask, np.array([0.55, 0.15, 0.15], np.float32))


def _paint_beard(canvas, fx, fy, hair, face_width, childness, beard):
    ax, ay = _face_axes(face_width, childness)
    lower_face = _ellipse(fx, fy, 0, 0, ax + 0.02, ay + 0.03) & (fy > 0.18)
    mouth_gap = (np.abs(fx) < 0.13) & (fy > 0.24) & (fy < 0.36)
    _paint(canvas, (lower_face & ~mouth_gap) * beard * 0.9, hair)


def _paint_mark(canvas, fx, fy, kind, mx, my, angle, spacing, frame_colour):
    # The person-specific mark: a mole or a scar at the person's own place, or glasses.
    mole = (kind == MARKS.index("mole")) & _ellipse(fx, fy, mx, my, 0.04, 0.04)
    dx, dy = 0.1 * np.cos(angle), 0.1 * np.sin(angle)
    scar = (kind == MARKS.index("scar")) & _segment(fx, fy, mx - dx, my - dy, mx + dx, my + dy, 0.018)
    _paint(canvas, mole, np.array([0.22, 0.12, 0.08], np.float32))
    _paint(canvas, scar, np.array([0.85, 0.55, 0.55], np.float32))
    rings = np.zeros(fx.shape, bool)
    for side in (-1, 1):
        d = np.sqrt((fx - side * spacing) ** 2 + (fy + 0.04) ** 2)
        rings |= (d > 0.095) & (d < 0.125)
    rings |= _segment(fx, fy, -spacing + 0.11, -0.05, spacing - 0.11, -0.05, 0.015)
    _paint(canvas, (rings & (kind == MARKS.index("glasses"))), frame_colour)


def _apply_lighting(img, x, brightness, contrast, side_light, cast):
    mean = img.mean(axis=(0, 2, 3), keepdims=True)
    img = (img - mean) * contrast[None] + mean
    img *= (brightness * (1 + side_light * x))[None]
    img *= cast
    return img


def _add_noise(img, sd, seed):
    noise = np.random.default_rng(seed).standard_normal(img.shape, dtype=np.float32)
    noise *= sd
    img += noise
    return img


def _render_chunk(protocol: Protocol, ids: dict, im: dict, sel: np.ndarray) -> np.ndarray:
    size = protocol.image_size
    factor = max(1, -(-RENDER_SIZE // size))
    r = size * factor
    n = len(sel)
    p = im["person"][sel]

    def s(a):  # per-image scalar -> [n, 1, 1]
        return np.asarray(a, dtype=np.float32).reshape(n, 1, 1)

    def c(a):  # per-image colour -> [3, n, 1, 1]
        return np.ascontiguousarray(np.asarray(a, dtype=np.float32).T).reshape(3, n, 1, 1)

    g = ((np.arange(r, dtype=np.float32) + 0.5) / r) * 2 - 1
    x, y = np.broadcast_to(g[None, None, :], (n, r, r)), np.broadcast_to(g[None, :, None], (n, r, r))
    # Pose: the face's own coordinates (u, v) from the image's, through shift, rotation and scale.
    cos, sin = np.cos(s(im["rotation"][sel])), np.sin(s(im["rotation"][sel]))
    xs, ys = x - s(im["tx"][sel]), y - s(im["ty"][sel])
    u = (cos * xs + sin * ys) / s(im["scale"][sel])
    v = (-sin * xs + cos * ys) / s(im["scale"][sel])

    app = ids["apparent_age"][p]
    childness = s(np.clip((CHILD_UNTIL - app) / (CHILD_UNTIL - AGE_MIN), 0, 1))
    grey = np.clip((app - ids["grey_onset"][p]) / GREY_SPAN, 0, 1)[:, None]
    recession = s(ids["balding"][p] * np.clip((app - BALDING_START) / BALDING_SPAN, 0, 1))
    wrinkles = s(ids["wrinkliness"][p] * np.clip((app - WRINKLE_START) / WRINKLE_SPAN, 0, 1))
    old = np.clip((app - SKIN_AGE_START) / SKIN_AGE_SPAN, 0, 1)[:, None]
    base_skin = ids["skin"][p]
    skin = base_skin + SKIN_AGE_SHIFT * old * (base_skin.mean(1, keepdims=True) * OLD_SKIN_TINT - base_skin)
    hair = ids["hair"][p] * (1 - grey) + GREY_HAIR * grey
    hair_density = s(1 - 0.35 * ids["balding"][p] * np.clip((app - BALDING_START) / BALDING_SPAN, 0, 1))
    beard = s(ids["beard"][p] & (app >= BEARD_MIN_AGE))
    style, width, spacing = s(ids["hair_style"][p]), s(ids["face_width"][p]), s(ids["eye_spacing"][p])

    # Head coordinates: children's heads are larger in the frame.
    head = 1 + HEAD_GROWTH_CHILD * childness
    fx, fy = u / head, (v + 0.12) / head

    canvas = np.empty((3, n, r, r), np.float32)
    _paint_background(canvas, y, c(im["background"][sel]), s(im["background_slope"][sel]))
    _paint_torso(canvas, u, v, c(np.clip(ids["clothing"][p] + im["clothing_jitter"][sel], 0, 1)),
                 c(ids["clothing2"][p]), s(ids["clothing_pattern"][p]), childness)
    _paint_neck(canvas, u, v, c(skin), head)
    _paint_hair_behind(canvas, fx, fy, c(hair), style, hair_density, width, childness)
    _paint_face(canvas, fx, fy, c(skin), width, childness)
    _paint_cheeks(canvas, fx, fy, spacing, childness)
    _paint_wrinkles(canvas, fx, fy, spacing, wrinkles)
    _paint_eyes(canvas, fx, fy, c(ids["eye"][p]), spacing, childness, c(skin), EYELID_DROOP * s(old))
    _paint_eyebrows(canvas, fx, fy, c(hair), spacing)
    _paint_mouth(canvas, fx, fy, s(im["smile"][sel]), s(im["mouth_open"][sel]))
    _paint_beard(canvas, fx, fy, c(hair), width, childness, beard)
    _paint_hair(canvas, fx, fy, c(hair), style, hair_density, recession, width, childness)
    _paint_mark(canvas, fx, fy, s(ids["mark"][p]), s(ids["mark_x"][p]), s(ids["mark_y"][p]),
                s(ids["mark_angle"][p]), spacing, c(ids["glasses_colour"][p]))

    # Down to the output size by averaging factor x factor blocks (anti-aliasing).
    img = np.zeros((3, n, size, size), np.float32)
    for dy in range(factor):
        for dx in range(factor):
            img += canvas[:, :, dy::factor, dx::factor]
    img *= 1 / factor ** 2
    xo = np.broadcast_to(((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1)[None, None, :], (n, size, size))
    img = _apply_lighting(img, xo, s(im["brightness"][sel]), s(im["contrast"][sel]), s(im["side_light"][sel]),
                          c(im["cast"][sel]))
    img = _add_noise(img, s(im["noise_sd"][sel]), im["noise_seed"][sel[0]])  # one stream per chunk
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)


def render(protocol: Protocol, ids: dict | None = None, im: dict | None = None) -> np.ndarray:
    """All images of the protocol's data set as uint8 `[N, H, W, 3]`, in person/number order."""
    ids = _sample_identities(protocol) if ids is None else ids
    im = _sample_images(protocol, ids) if im is None else im
    m = len(im["person"])
    out = np.empty((m, protocol.image_size, protocol.image_size, 3), np.uint8)
    for start in range(0, m, CHUNK):
        sel = np.arange(start, min(m, start + CHUNK))
        out[sel] = _render_chunk(protocol, ids, im, sel)
    return out


# ================================================================================================
# Labels, split, and the Kaggle layout on disk
# ================================================================================================

def age_group_edges(ages: np.ndarray, n_classes: int) -> np.ndarray:
    """PROTOCOL §2: n_classes equal-width bins, edges evenly spaced from the youngest age to the
    oldest age + 1."""
    return np.linspace(float(ages.min()), float(ages.max()) + 1, n_classes + 1)


def age_groups(ages: np.ndarray, edges: np.ndarray) -> np.ndarray:
    n_classes = len(edges) - 1
    return np.clip(np.searchsorted(edges, ages, side="right") - 1, 0, n_classes - 1).astype(np.int64)


def _assign_splits(protocol: Protocol, person: np.ndarray) -> np.ndarray:
    """Split name index (into SPLITS) per image: one seeded shuffle, then train/val/test by image;
    forget = the training images of the lowest person indices."""
    m = len(person)
    order = np.random.default_rng(protocol.split_seed).permutation(m)
    f_train, f_val, _ = protocol.split_fractions
    n_train, n_val = int(round(f_train * m)), int(round(f_val * m))
    split = np.empty(m, np.int64)
    split[order[:n_train]] = SPLITS.index("retain")
    split[order[n_train:n_train + n_val]] = SPLITS.index("validation")
    split[order[n_train + n_val:]] = SPLITS.index("test")
    split[(split == SPLITS.index("retain")) & (person < protocol.n_forget_identities)] = SPLITS.index("forget")
    return split


def _png_bytes(image_hwc: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_hwc, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def _write_dataset(protocol: Protocol, folder: Path) -> None:
    ids = _sample_identities(protocol)
    im = _sample_images(protocol, ids)
    images = render(protocol, ids, im)
    person, number = im["person"], im["number"]
    ages = ids["age"][person]
    edges = age_group_edges(ages, protocol.n_classes)
    groups = age_groups(ages, edges)
    split = _assign_splits(protocol, person)

    for pid in np.unique(person):
        (folder / "images" / str(pid)).mkdir(parents=True, exist_ok=True)
    image_entries = []
    for i in range(len(person)):
        relative = f"images/{person[i]}/{number[i]}.png"
        png = _png_bytes(images[i])
        (folder / relative).write_bytes(png)
        image_entries.append((relative, hashlib.sha256(png).hexdigest()))

    counts, class_counts, csv_sha256 = {}, {}, {}
    for k, name in enumerate(SPLITS):
        rows = np.flatnonzero(split == k)  # already in (person, number) order
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for i in rows:
            w.writerow([f"{person[i]}-{number[i]}", int(person[i]), int(ages[i]), int(groups[i])])
        blob = text.getvalue().encode()
        (folder / f"{name}.csv").write_bytes(blob)
        csv_sha256[name] = hashlib.sha256(blob).hexdigest()
        counts[name] = int(len(rows))
        class_counts[name] = np.bincount(groups[rows], minlength=protocol.n_classes).tolist()
    meta = {
        "generator_version": GENERATOR_VERSION,
        "data_hash": protocol.data_hash(),
        "data_fields": protocol.data_fields(),
        "image_size": protocol.image_size,
        "n_images": int(len(person)),
        "n_identities": protocol.n_identities,
        "forget_identities": list(range(protocol.n_forget_identities)),
        "counts": counts,
        "age_group_edges": edges.tolist(),
        "class_counts": class_counts,
        "class_counts_all": np.bincount(groups, minlength=protocol.n_classes).tolist(),
        "csv_sha256": csv_sha256,
        "images_sha256": _digest(image_entries),
    }
    # Written last: its presence marks a complete data set.
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def _is_complete(root: Path) -> bool:
    return (root / "meta.json").is_file()


def _read_meta(root: Path) -> dict:
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _is_current(root: Path, data_hash: str) -> bool:
    """A complete data set of this data hash made by this generator version, with its digests."""
    meta = _read_meta(root)
    return (meta.get("data_hash") == data_hash and meta.get("generator_version") == GENERATOR_VERSION
            and "images_sha256" in meta and "csv_sha256" in meta)


def _digest(entries) -> str:
    """One sha256 over the sorted lines "<path relative to the root> <sha256 of the file>"."""
    h = hashlib.sha256()
    for relative, sha in sorted(entries):
        h.update(f"{relative} {sha}\n".encode())
    return h.hexdigest()


def images_digest(root: Path) -> str:
    """The digest (see `_digest`) of every file under `root/images`: it changes when an image is
    altered, truncated, added or removed."""
    root = Path(root)
    files = [p for p in (root / "images").rglob("*") if p.is_file()]
    return _digest((p.relative_to(root).as_posix(), paths.file_sha256(p)) for p in files)


def _mismatch(root: Path, fingerprint: dict[str, str]) -> str | None:
    """What differs from the digests in meta.json (nothing to compare without them), or None."""
    meta = _read_meta(root)
    recorded = meta.get("csv_sha256") if isinstance(meta.get("csv_sha256"), dict) else {}
    for name, sha in fingerprint.items():
        if name in recorded and recorded[name] != sha:
            return f"{name}.csv does not match its sha256 in meta.json (altered or truncated)"
    if "images_sha256" in meta and images_digest(root) != meta["images_sha256"]:
        return "the images do not match their digest in meta.json (an image altered, truncated, added or removed)"
    return None


def generate(protocol: Protocol, root: Path) -> Path:
    """Write the synthetic data set at `root` and return `root`.

    Built in a temporary sibling folder and renamed into place, so an interrupted run never leaves
    a folder that looks complete. If `root` already holds a complete data set of the same data
    hash (e.g. another process won a race), the new copy is discarded."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        _write_dataset(protocol, tmp)
        _install(tmp, root, protocol.data_hash())
    except OSError as e:  # a full disk, say: name the data set, not a file of the folder removed below
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(root)) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _install(tmp: Path, root: Path, data_hash: str) -> None:
    try:
        os.replace(tmp, root)
        return
    except OSError:
        if not root.exists():
            raise
    # `root` exists and is not empty.
    if _is_current(root, data_hash):
        return  # someone else finished the same data set first: keep theirs
    # A stale or different data set (or a partial folder left by something else): move it aside
    # first (a rename is atomic), put ours in place, then delete the old one.
    aside = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.replace(root, aside)
    try:
        os.replace(tmp, root)
    except OSError:
        if not _is_complete(root):
            raise
    shutil.rmtree(aside, ignore_errors=True)


def ensure_data(protocol: Protocol, cache_dir: Path) -> Path:
    """The protocol's data folder `cache_dir/data-<data_hash>`, generated when missing, incomplete,
    made by another generator version, or failing its integrity check (then with a warning), and
    with its splits packed. Safe when several processes call it at once: one generates, the others
    wait for it."""
    if protocol.data_source != GENERATOR_VERSION:
        raise ValueError(f"profile {protocol.name!r} asks for data source {protocol.data_source!r}; this "
                         f"harness generates {GENERATOR_VERSION!r}: update the profile or the harness")
    root = Path(cache_dir) / f"data-{protocol.data_hash()}"
    if _unusable(root, protocol.data_hash()) is None:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with paths.locked(root.parent / f".{root.name}.lock", f"generating data set {root.name}"):
        problem = _unusable(root, protocol.data_hash())  # again: another process may have made it meanwhile
        if problem is None:
            return root
        if problem:
            print(f"data set {root}: {problem}: generating it again", file=sys.stderr, flush=True)
        # Under the lock, whatever a killed generation left beside the folder is stale.
        _remove(root)
        for stale in [*root.parent.glob(f".{root.name}.tmp-*"), *root.parent.glob(f".{root.name}.old-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        generate(protocol, root)
        load_splits(root)  # pack the splits once, here, rather than in every worker
    return root


def _unusable(root: Path, data_hash: str) -> str | None:
    """None when the data set at root can be used (packing its splits if needed); "" when it is
    absent, incomplete or outdated; else what failed its integrity check."""
    if not _is_current(root, data_hash):
        return ""
    try:
        fingerprint = _csv_fingerprint(root)
        if _packed(root, fingerprint) is not None:
            return None
        problem = _mismatch(root, fingerprint)
        if problem is None:
            _pack(root, fingerprint)
        return problem
    except (OSError, ValueError) as e:
        return str(e)


def _remove(path: Path) -> None:
    """Delete a folder: renamed aside first (atomic), so nobody sees it half deleted."""
    if not path.exists():
        return
    aside = path.parent / f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


# ================================================================================================
# Reading (any folder in the Kaggle layout)
# ================================================================================================

@dataclass
class Split:
    images: torch.Tensor      # uint8 [N, 3, H, W]
    age_group: torch.Tensor   # int64 [N]
    age: torch.Tensor         # int64 [N]
    person_id: torch.Tensor   # int64 [N]
    image_id: list[str]

    def __len__(self) -> int:
        return len(self.image_id)


class DataCorrupt(ValueError):
    """A data folder's files differ from the digests in its meta.json."""


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CSV file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in CSV_COLUMNS if c not in columns]
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected "
                                 f"{', '.join(CSV_COLUMNS)}, found {', '.join(columns) or 'no header'}")
            return [{k.strip(): (v or "").strip() for k, v in row.items() if isinstance(k, str)} for row in reader]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: not a readable CSV row ({e})") from None


def _image_path(root: Path, image_id: str) -> Path:
    person, sep, number = image_id.rpartition("-")
    # No separators and no "..": an image id names a file under root/images, nothing else.
    if not sep or not person or not number or person in (".", "..") or any(c in image_id for c in "/\\\0"):
        raise ValueError(f"image_id {image_id!r} is not of the form <person>-<n>")
    return root / "images" / person / f"{number}.png"


def _read_png(path: Path) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "RGB":
                # The models take 3 channels; read_image in the Kaggle notebooks would not convert.
                raise ValueError(f"{path}: image mode is {img.mode}, expected RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable PNG image ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def read_split(root: Path, name: str) -> Split:
    """Read `<root>/<name>.csv` and its PNGs."""
    root = Path(root)
    path = root / f"{name}.csv"
    rows = _read_csv(path)
    images, ages, groups, persons, image_ids = [], [], [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            age, group, pid = (int(row[c]) for c in ("age", "age_group", "person_id"))
            image_path = _image_path(root, row["image_id"])
        except ValueError as e:
            raise ValueError(f"{path}:{line}: {e}") from None
        if not all(0 <= v < 2**63 for v in (age, group, pid)):
            raise ValueError(f"{path}:{line}: age, age_group and person_id must be non-negative 64-bit integers, "
                             f"got {row}")
        img = _read_png(image_path)
        if images and img.shape != images[0].shape:
            raise ValueError(f"{image_path}: size {tuple(img.shape[1:])} differs from "
                             f"{tuple(images[0].shape[1:])} of the split's first image")
        images.append(img)
        ages.append(age)
        groups.append(group)
        persons.append(pid)
        image_ids.append(row["image_id"])
    if images:
        stacked = torch.stack(images)
    else:
        stacked = torch.zeros((0, 3, 0, 0), dtype=torch.uint8)
    return Split(images=stacked, age_group=torch.tensor(groups, dtype=torch.int64),
                 age=torch.tensor(ages, dtype=torch.int64), person_id=torch.tensor(persons, dtype=torch.int64),
                 image_id=image_ids)


def _csv_fingerprint(root: Path) -> dict[str, str]:
    out = {}
    for name in SPLITS:
        path = root / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CSV file not found")
        out[name] = paths.file_sha256(path)
    return out


def load_splits(root: Path) -> dict[str, Split]:
    """All four splits, through the packed cache `root/splits.pt` so that worker processes do not
    each decode thousands of PNGs. When the cache cannot be used the splits are read from the
    PNGs, after checking the files against meta.json's digests: DataCorrupt when they differ."""
    root = Path(root)
    fingerprint = _csv_fingerprint(root)
    blob = _packed(root, fingerprint)
    if blob is not None:
        try:
            packed = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            splits = {name: Split(**packed[name]) for name in SPLITS}
            if all(len(s) == len(s.images) == len(s.age_group) for s in splits.values()):
                return splits
        except Exception:  # e.g. written by another torch version: read the PNGs instead
            pass
    problem = _mismatch(root, fingerprint)
    if problem:
        raise DataCorrupt(f"data set {root}: {problem}: restore the original files (a data set the harness "
                          "generated: delete its folder and it is made again)")
    return _pack(root, fingerprint)


def _packed(root: Path, fingerprint: dict[str, str]) -> bytes | None:
    """The bytes of splits.pt when they match the sha256 in splits.json and were packed from
    these CSVs; else None."""
    try:
        record = paths.read_json(root / PACKED_RECORD)
        blob = (root / PACKED_CACHE).read_bytes()
    except (OSError, ValueError):
        return None
    ok = (isinstance(record, dict) and record.get("version") == PACKED_CACHE_VERSION
          and record.get("csv_sha256") == fingerprint and record.get("sha256") == hashlib.sha256(blob).hexdigest())
    return blob if ok else None


def _pack(root: Path, fingerprint: dict[str, str]) -> dict[str, Split]:
    """The splits read from the PNGs, written to splits.pt and then its record splits.json."""
    splits = {name: read_split(root, name) for name in SPLITS}
    buf = io.BytesIO()
    torch.save({n: vars(s) for n, s in splits.items()}, buf)
    blob = buf.getvalue()
    try:
        paths.atomic_write_bytes(root / PACKED_CACHE, blob)
        paths.atomic_write_json(root / PACKED_RECORD, {"version": PACKED_CACHE_VERSION, "csv_sha256": fingerprint,
                                                       "sha256": hashlib.sha256(blob).hexdigest()})
    except OSError:
        pass  # a read-only data folder or a full disk: work without the cache
    return splits


def kaggle_order(split: Split) -> Split:
    """The split in the order the competition notebooks' HiddenDataset held it: rows sorted by
    the image path `images/<person>/<n>.png` as a string (so person 10 comes before person 2).
    The loaders handed to a submission use this order, so a seeded shuffle gives the same batches
    in a harness run and in a Kaggle notebook."""
    def path(i: int) -> str:
        person, _, number = split.image_id[i].rpartition("-")
        return f"{person}/{number}.png"

    order = sorted(range(len(split)), key=path)
    idx = torch.tensor(order, dtype=torch.int64)
    return Split(images=split.images[idx], age_group=split.age_group[idx], age=split.age[idx],
                 person_id=split.person_id[idx], image_id=[split.image_id[i] for i in order])


# ================================================================================================
# What the model sees
# ================================================================================================

def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """1 / (number of training images of the class); 0 for a class with no images."""
    counts = torch.bincount(labels.long().flatten(), minlength=n_classes)[:n_classes].float()
    return torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts)).float()


def to_model_input(images_uint8: torch.Tensor, pixel_scale: str) -> torch.Tensor:
    """"unit": x / 255; "raw": 0..255 as float (the Kaggle notebooks' read_image().float())."""
    if pixel_scale == "unit":
        return images_uint8.float() / 255.0
    if pixel_scale == "raw":
        return images_uint8.float()
    raise ValueError(f"unknown pixel_scale {pixel_scale!r}: use 'unit' or 'raw'")


class FaceAgeDataset(torch.utils.data.Dataset):
    """Items are dicts with the competition loaders' keys: image, age_group, age, person_id, image_id."""

    def __init__(self, split: Split, pixel_scale: str):
        to_model_input(split.images[:0], pixel_scale)  # validate the scale now, not on first access
        self.split = split
        self.pixel_scale = pixel_scale

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        s = self.split
        return {"image": to_model_input(s.images[i], self.pixel_scale), "age_group": s.age_group[i],
                "age": s.age[i], "person_id": s.person_id[i], "image_id": s.image_id[i]}


def make_loader(split: Split, pixel_scale: str, batch_size: int, shuffle: bool,
                seed: int | None = None) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed) if shuffle and seed is not None else None
    return torch.utils.data.DataLoader(FaceAgeDataset(split, pixel_scale), batch_size=batch_size,
                                       shuffle=shuffle, generator=generator, num_workers=0)
