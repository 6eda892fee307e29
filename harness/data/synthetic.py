"""The embedded data: a synthetic face-age generator (PROTOCOL §2 says why it stands in for the
competition's private faces). `table(protocol)` gives every image with its person and age; the
split, the scenario and the Kaggle layout on disk are the same as for real data (harness.data.cache).

Each person has fixed traits that have nothing to do with age (face width, skin
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

import numpy as np

from harness.protocol import SYNTHETIC, Protocol

GENERATOR_VERSION = SYNTHETIC  # named in the protocol, so that it is part of every cache key

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



def table(protocol: Protocol):
    """Every image of the protocol's data set with its person, age and age group."""
    from harness.data.scenarios import age_group_edges, age_groups
    from harness.data.table import Table

    ids = _sample_identities(protocol)
    im = _sample_images(protocol, ids)
    ages = ids["age"][im["person"]]
    edges = age_group_edges(ages, protocol.n_classes)
    return Table(images=render(protocol, ids, im), label=age_groups(ages, edges), age=ages.astype(np.int64),
                 person=im["person"].astype(np.int64), edges=edges.tolist())
