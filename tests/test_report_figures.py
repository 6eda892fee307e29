"""The report's figures on small realistic arrays: each is a real PNG of a plausible size, the same
inputs give the same bytes, the drawn colours and counts follow the inputs, and NaN / inf / tiny
inputs do not raise."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from harness import metric
from harness.report import figures

NAN = math.nan
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
M, K, SIDE = 8, 16, 24            # examples shown, models per population, image side (pixels)
LEGEND_SWATCH_MAX = 1000          # pixels of one colour a legend swatch can cover


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG that PIL decodes; fails on anything else or an implausible size."""
    assert isinstance(data, bytes) and data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        im.load()
        w, h = im.size
    assert 300 <= w <= 3000 and 200 <= h <= 4000, (w, h)
    return w, h


def has_colour(data: bytes, hex_colour: str, min_pixels: int = 50) -> bool:
    """Whether at least min_pixels pixels are exactly hex_colour (bar interiors are not antialiased)."""
    rgb = np.array(Image.open(io.BytesIO(data)).convert("RGB"))                 # [H, W, 3]
    want = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.all(rgb == want, axis=2).sum()) >= min_pixels


def same_twice(fn, *args) -> bytes:
    first = fn(*args)
    assert fn(*args) == first
    return first


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def images(rng):
    return rng.integers(0, 256, size=(M, SIDE, SIDE, 3), dtype=np.uint8)    # [M, H, W, 3]


def example_names(m: int) -> list[str]:
    return [f"{i:04d}.png (person {i % 3}, class {i % 5})" for i in range(m)]


# --- score_parts -------------------------------------------------------------------------------
def test_score_parts_png_deterministic_and_coloured():
    data = same_twice(figures.score_parts, 0.0523, (0.041, 0.063), 0.061, 0.19, 0.97, 0.99)
    png_size(data)
    assert has_colour(data, figures.COLORS["unlearned"], min_pixels=2000)   # the four bars
    assert data != figures.score_parts(0.0523, (0.041, 0.063), 0.061, 0.19, 0.70, 0.99)


@pytest.mark.parametrize("args", [
    (NAN, (NAN, NAN), NAN, NAN, NAN, NAN),
    (0.0, (0.0, 0.0), 0.0, 0.0, 0.0, 0.0),
    (None, None, 0.3, None, 1.4, 0.8),                                           # missing values
    (np.float32(0.9), (np.float64(0.85), np.float64(0.95)), 1.0, 1.0, 1.2, 1.3),  # numpy scalars, ratios > 1
])
def test_score_parts_edge_cases(args):
    png_size(figures.score_parts(*args))


def test_score_parts_nan_draws_no_bars():
    data = figures.score_parts(NAN, (NAN, NAN), NAN, NAN, NAN, NAN)
    assert not has_colour(data, figures.COLORS["unlearned"], min_pixels=1)


# --- epsilon_histogram ------------------------------------------------------------------------
@pytest.fixture
def eps(rng):
    return np.concatenate([rng.exponential(1.5, 400), np.full(30, 50.0), np.full(5, np.inf)])  # [N]


def test_eps_buckets_match_the_metric(eps):
    k = 512                                                            # cut-off ceil(ln 511) = 7: 14 buckets
    counts, beyond, bucket_pts, e = figures._eps_buckets(eps, k)
    assert len(counts) == len(bucket_pts) == 14
    assert counts.sum() + beyond == len(eps)
    assert beyond == int(np.sum(np.nan_to_num(eps, posinf=50.0) >= 7.0))
    assert bucket_pts[0] == 1.0 and bucket_pts[-1] == 2.0 ** -13
    # mean points from the buckets equals the metric's F for the same ε
    assert counts @ bucket_pts / len(eps) == pytest.approx(metric.points(e, k).mean(), rel=1e-12)
    assert np.array_equal(np.sort(e), np.sort(np.nan_to_num(eps, posinf=50.0)))


def test_eps_buckets_bucket_edges():
    counts, beyond, _, _ = figures._eps_buckets([0.0, 0.49, 0.5, 1.0, 6.99, 7.0, NAN], 512)
    assert counts[0] == 2 and counts[1] == 1 and counts[2] == 1 and counts[13] == 1
    assert beyond == 1 and counts.sum() == 5                                    # NaN dropped


def test_epsilon_histogram_png_deterministic(eps):
    data = same_twice(figures.epsilon_histogram, eps, 512)
    png_size(data)
    assert data != figures.epsilon_histogram(eps[:200], 512)
    assert data != figures.epsilon_histogram(eps, 64)


@pytest.mark.parametrize("values, k", [
    (np.full(20, 50.0), 512),          # every example beyond the cut-off
    (np.full(20, np.inf), 512),
    (np.array([0.3]), 512),            # one example
    (np.zeros(10), 2),                 # K = 2: nothing scores
    (np.array([], dtype=float), 32),   # no examples
    (np.array([NAN, 1.0]), 32),
    ([0.25, 3.0, 60.0], 1000),         # a list, a value above the cap
])
def test_epsilon_histogram_edge_cases(values, k):
    png_size(figures.epsilon_histogram(values, k))


def test_epsilon_histogram_rejects_bad_k(eps):
    with pytest.raises(ValueError):
        figures.epsilon_histogram(eps, 1)


# --- worst_examples ---------------------------------------------------------------------------
def test_worst_examples_png_deterministic(rng, images):
    conf_r = rng.normal(2.0, 1.0, size=(K, M))                          # [K, M]
    conf_u = rng.normal(4.0, 1.5, size=(K, M))
    eps = np.sort(rng.exponential(3.0, M))[::-1]                        # [M]
    data = same_twice(figures.worst_examples, images, conf_r, conf_u, eps, example_names(M))
    w, h = png_size(data)
    _, h_one = png_size(figures.worst_examples(images[:1], conf_r[:, :1], conf_u[:, :1], eps[:1], example_names(1)))
    assert h > 3 * h_one                                                  # one row per example


def test_worst_examples_edge_cases(rng, images):
    conf_r = rng.normal(size=(K, 3))
    conf_u = np.full((K + 4, 3), 5.0)                                     # K_u != K_r; all equal
    conf_r[:, 1] = NAN                                                    # one population without values
    conf_u[:, 2] = np.inf
    conf_r[:, 2] = NAN                                                    # no finite values at all
    png_size(figures.worst_examples(images[:3], conf_r, conf_u, np.array([np.inf, NAN, 50.0]), example_names(3)))
    png_size(figures.worst_examples(images[:0], conf_r[:, :0], conf_u[:, :0], np.zeros(0), []))


# --- accuracy_by ------------------------------------------------------------------------------
def accuracy_groups(rng, labels) -> dict:
    return {g: {"original": 100.0, "retrained": float(rng.uniform(30, 80)), "unlearned": float(rng.uniform(30, 100))}
            for g in labels}


def test_accuracy_by_identities_png_deterministic(rng):
    groups = accuracy_groups(rng, [int(i) for i in np.arange(15) * 37])    # 15 identities
    data = same_twice(figures.accuracy_by, groups, "Forget accuracy per identity", "person")
    w, _ = png_size(data)
    for colour in figures.COLORS.values():
        assert has_colour(data, colour)
    w_few, _ = png_size(figures.accuracy_by(dict(list(groups.items())[:2]), "few", "person"))
    assert w > w_few                                                          # wider with more groups


def test_accuracy_by_classes_nan_and_empty(rng):
    groups = accuracy_groups(rng, range(10))
    groups[3]["unlearned"] = NAN
    groups[4] = {"original": NAN, "retrained": NAN, "unlearned": NAN}
    groups[5] = {"original": 90.0}                                            # missing populations
    png_size(figures.accuracy_by(groups, "Forget accuracy per class", "class"))
    png_size(figures.accuracy_by({"a very long group label": {"original": 1.0, "retrained": 2.0, "unlearned": 3.0}},
                                 "one group", "label"))
    png_size(figures.accuracy_by({}, "nothing", "class"))


def test_accuracy_by_all_nan_draws_no_bars():
    """Only the legend's swatch (about 200 pixels) is left of the red; one real bar has thousands."""
    nan_bars = figures.accuracy_by({0: {p: NAN for p in figures.MODELS}}, "all n/a", "class")
    real_bars = figures.accuracy_by({0: {p: 50.0 for p in figures.MODELS}}, "all n/a", "class")
    assert not has_colour(nan_bars, figures.COLORS["unlearned"], min_pixels=LEGEND_SWATCH_MAX)
    assert has_colour(real_bars, figures.COLORS["unlearned"], min_pixels=LEGEND_SWATCH_MAX)


# --- saliency ---------------------------------------------------------------------------------
def saliency_maps(rng, m: int) -> dict:
    return {p: rng.random((m, SIDE, SIDE)).astype(np.float32) * scale
            for p, scale in zip(figures.MODELS, (1e-3, 5.0, 0.2))}              # [M, H, W] each


def test_saliency_png_deterministic(rng, images):
    maps = saliency_maps(rng, 3)
    data = same_twice(figures.saliency, images[:3], maps, example_names(3))
    w, h = png_size(data)
    assert data != figures.saliency(images[:3], {**maps, "unlearned": maps["unlearned"][::-1]}, example_names(3))
    w_two, _ = png_size(figures.saliency(images[:3], {p: maps[p] for p in ("original", "unlearned")},
                                         example_names(3)))
    assert w > w_two                                                          # one column per model


def test_saliency_normalises_each_map(rng, images):
    """A map scaled by a constant draws the same picture: each map is normalised to its own max."""
    maps = saliency_maps(rng, 2)
    scaled = {p: m * 1e4 for p, m in maps.items()}
    assert figures.saliency(images[:2], maps, example_names(2)) == figures.saliency(images[:2], scaled,
                                                                                       example_names(2))


def test_saliency_edge_cases(rng, images):
    maps = saliency_maps(rng, 1)
    maps["original"][:] = 0.0                                                 # a flat map
    maps["retrained"][0, 0, 0] = NAN
    maps["unlearned"][0, 1, 1] = np.inf
    png_size(figures.saliency(images[:1], maps, ["only one"]))
    png_size(figures.saliency(images[:0], {p: np.zeros((0, SIDE, SIDE)) for p in figures.MODELS}, []))
