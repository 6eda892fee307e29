"""The report: one self-contained HTML page per result (figures inlined as PNG data URIs, no
script, no network), and the leaderboard in the same style with the metric columns."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
import torch

from harness import evaluate, metric, models, paths, reference_pool, runner, training
from harness.report import figures, metrics, saliency
from harness.report.collect import Bundle

N_WORST = 6          # worst-leaking forget examples shown with their confidence distributions
N_SALIENCY = 4       # of those, the ones shown with saliency maps
MAX_IDENTITIES = 30  # forget accuracy per identity only when the forget set has at most this many people
UNTRAINED_SEED = 0   # the untrained model of zero-retrain forgetting
POPULATIONS = ("original", "retrained", "unlearned")

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;
border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0;font-size:.92em}th,td{border:1px solid #ddd;
padding:.3em .6em;text-align:right}th:first-child,td:first-child{text-align:left}
table.kv td:last-child{text-align:left;font-family:ui-monospace,monospace;font-size:.85em;word-break:break-all}thead th{background:#f4f4f4}
img{max-width:100%;height:auto;display:block;margin:.6em 0}.note{color:#666;font-size:.9em}code{font-size:.92em}"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _fmt(x, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    return format(x, spec) if isinstance(x, (int, float, np.floating)) else html.escape(str(x))


def _table(header: list[str] | None, rows: list[list], cls: str = "") -> str:
    head = "" if header is None else "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{f' class={cls}' if cls else ''}>{head}<tbody>{body}</tbody></table>"


def _seeds(seeds: dict) -> str:
    """A seed list as its range when it is one (retrained j = seed0 + j), else as is."""
    def span(v):
        if isinstance(v, list) and len(v) > 2 and v == list(range(v[0], v[0] + len(v))):
            return f"{v[0]}..{v[-1]}"
        return v
    return json.dumps({k: span(v) for k, v in seeds.items()})


def _worst(eps: np.ndarray, people: np.ndarray, n: int) -> np.ndarray:
    """The n highest-ε forget examples, one per person first (ties at ε = 50 are common), then the rest."""
    order = np.argsort(-np.nan_to_num(eps, nan=-1.0, posinf=metric.EPS_CAP), kind="stable")
    firsts, seen = [], set()
    for i in order:
        if int(people[i]) not in seen:
            seen.add(int(people[i]))
            firsts.append(i)
    rest = [i for i in order if i not in set(firsts)]
    return np.array((firsts + rest)[:n], dtype=np.int64)


def _mia(b: Bundle, name: str, f_labels, t_labels) -> dict:
    """The membership attack, or NaN with the reason when the forget set is too small for its splits."""
    try:
        return metrics.mia_population(b.forget_logits[name], f_labels, b.test_logits[name], t_labels)
    except ValueError as e:
        return {"accuracy": float("nan"), "auc": float("nan"), "why": str(e)}


def _untrained_probs(b: Bundle) -> np.ndarray:
    """[N, C]: a randomly initialised model of the protocol's architecture on the forget set."""
    model = models.build(b.protocol, seed=UNTRAINED_SEED)
    x = training.model_input(b.splits["forget"], b.protocol, torch.device("cpu"))
    return metrics.probabilities(training.logits(model, x, b.protocol.eval_batch_size).numpy())


def compute(b: Bundle) -> dict:
    """The papers' metrics for the three populations (PROTOCOL §8), with the retrained population's
    own two halves as the reference an ideal unlearner matches."""
    k = b.result["k"]
    half = k // 2
    f_labels = b.splits["forget"].age_group.numpy()
    t_labels = b.splits["test"].age_group.numpy()[:b.test_logits["retrained"].shape[1]]
    p = {name: metrics.probabilities(lg) for name, lg in b.forget_logits.items()}      # [K, N, C]
    p_orig = np.repeat(p["original"], k, axis=0)
    untrained = _untrained_probs(b)
    c_r, c_u = b.conf["retrained"], b.conf["unlearned"]                                 # [K, N]
    out = {"accuracy": {}, "tta_forget_acc": b.tta, "mia": {}, "zrf": {}}
    pool_acc = {"original": [b.pool.original], "retrained": b.pool.retrains, "unlearned": b.runs}
    for name, recs in pool_acc.items():
        out["accuracy"][name] = {key: float(np.mean([r[key] for r in recs]))
                                 for key in ("retain_acc", "forget_acc", "val_acc", "test_acc")}
        out["mia"][name] = _mia(b, name, f_labels, t_labels)
        out["zrf"][name] = metrics.zrf(p[name], untrained)
    out["activation_distance"] = {"unlearned": metrics.activation_distance(p["unlearned"], p["retrained"]),
                                  "original": metrics.activation_distance(p_orig, p["retrained"]),
                                  "retrained_halves": metrics.activation_distance(p["retrained"][:half],
                                                                                  p["retrained"][half:2 * half])}
    out["js_divergence"] = {"unlearned": metrics.mean_js(p["unlearned"], p["retrained"]),
                            "original": metrics.mean_js(p_orig, p["retrained"]),
                            "retrained_halves": metrics.mean_js(p["retrained"][:half], p["retrained"][half:2 * half])}
    lira = metrics.lira(c_r, c_u)
    kl = metrics.binned_kl(c_r, c_u)
    out["lira_accuracy"] = {"unlearned": float(lira.mean()),
                            "retrained_halves": float(metrics.lira(c_r[:half], c_r[half:2 * half]).mean())}
    out["binned_kl"] = {"unlearned": float(kl.mean()),
                        "retrained_halves": float(metrics.binned_kl(c_r[:half], c_r[half:2 * half]).mean())}
    retrain_s = b.result["seconds"]["retrain_mean"]
    out["time_vs_retrain"] = (b.result["seconds"]["unlearning_mean"] / retrain_s
                              if b.result["seconds"].get("unlearning_mean") and retrain_s else None)
    out["per_example"] = {"epsilon": b.result["epsilons"], "lira_accuracy": lira.tolist(), "binned_kl": kl.tolist()}
    return out


def _accuracy_by(b: Bundle, groups: np.ndarray) -> dict:
    labels = b.splits["forget"].age_group.numpy()
    per = {name: metrics.accuracy_by_group(b.forget_logits[name], labels, groups) for name in POPULATIONS}
    return {g: {name: per[name][g] for name in POPULATIONS} for g in per["retrained"]}


def _saliency_maps(b: Bundle, idx: np.ndarray) -> dict:
    forget = b.splits["forget"]
    imgs, labels = forget.images[idx], forget.age_group[idx]
    states = {"original": reference_pool.load_state(b.pool.original_weights, b.pool.original["weights_sha256"]),
              "retrained": reference_pool.load_state(b.pool.retrain_weights(0), b.pool.retrains[0]["weights_sha256"]),
              "unlearned": torch.load(runner.weights_path(b.runs_dir, 0), map_location="cpu", weights_only=True)}
    return {name: saliency.input_gradients(b.protocol, state, imgs, labels) for name, state in states.items()}


def render(b: Bundle, m: dict) -> str:
    r = b.result
    forget = b.splits["forget"]
    eps = np.asarray(r["epsilons"], dtype=np.float64)
    worst = _worst(eps, forget.person_id.numpy(), N_WORST)
    images_hwc = forget.images.permute(0, 2, 3, 1).numpy()
    names = [f"{forget.image_id[i]} (person {int(forget.person_id[i])}, class {int(forget.age_group[i])})"
             for i in worst]
    lo, hi = r["score_ci95"]
    parts = [f"<h1>{html.escape(r['submission_name'])}: score {_fmt(r['score'], '.4f')}</h1>",
             f"<p>95% interval [{_fmt(lo, '.4f')}, {_fmt(hi, '.4f')}] · profile <code>{html.escape(r['profile'])}</code>"
             f" · scenario {html.escape(r.get('scenario', 'identity'))} · K={r['k']} · {r['n_forget']} forget examples"
             f" · protocol {html.escape(r['protocol_version'])}</p>",
             "<h2>Score and its parts</h2>",
             _img(figures.score_parts(r["score"], (lo, hi), r["forget_quality"], r["null_forget_quality"],
                                      r["retain_acc_ratio"], r["test_acc_ratio"]), "score and its parts"),
             "<p class=note>The null ceiling is what a perfect unlearner reaches at this K: the retrained models' two "
             "halves scored against each other.</p>",
             "<h2>ε per forget example</h2>", _img(figures.epsilon_histogram(eps, r["k"]), "histogram of epsilon"),
             "<h2>Worst-leaking forget examples</h2>",
             _img(figures.worst_examples(images_hwc[worst], b.conf["retrained"][:, worst], b.conf["unlearned"][:, worst],
                                         eps[worst], names), "worst-leaking forget examples"),
             "<h2>Forget accuracy per class</h2>",
             _img(figures.accuracy_by(_accuracy_by(b, forget.age_group.numpy()), "Forget accuracy per class", "class"),
                  "forget accuracy per class")]
    people = forget.person_id.numpy()
    if len(np.unique(people)) <= MAX_IDENTITIES:
        parts += ["<h2>Forget accuracy per identity</h2>",
                  _img(figures.accuracy_by(_accuracy_by(b, people), "Forget accuracy per identity", "person"),
                       "forget accuracy per identity")]
    else:
        parts.append(f"<p class=note>Forget accuracy per identity is left out: the forget set has "
                     f"{len(np.unique(people))} people (more than {MAX_IDENTITIES}).</p>")
    shown = worst[:N_SALIENCY]
    parts += ["<h2>Saliency maps</h2>",
              "<p class=note>|∂ logit of the true class / ∂ input|, max over colour channels: the original model, "
              "retrained model 0 and unlearned run 0, on the worst-leaking forget images.</p>",
              _img(figures.saliency(images_hwc[shown], _saliency_maps(b, shown), names[:N_SALIENCY]), "saliency maps")]
    acc, mia, tta = m["accuracy"], m["mia"], m["tta_forget_acc"]
    rows = [[name] + [_fmt(acc[name][key], ".1f") for key in ("retain_acc", "forget_acc", "val_acc", "test_acc")]
            + [_fmt(tta[name][v], ".1f") for v in evaluate.TTA_VIEWS]
            + [_fmt(mia[name]["accuracy"]), _fmt(mia[name]["auc"]), _fmt(m["zrf"][name])] for name in POPULATIONS]
    parts += ["<h2>Metrics</h2>",
              _table(["model", "retain %", "forget %", "val %", "test %", "forget % hflip", "forget % vflip",
                      "forget % crop", "MIA acc", "MIA AUC", "ZRF"], rows),
              "<p class=note>MIA: the starting kit's loss-based attack (logistic regression, forget vs test, 10 "
              "stratified splits); ideal is the retrained value. ZRF: 1 − mean JS divergence from an untrained "
              "model on the forget set.</p>",
              _table(["vs the retrained models", "unlearned", "original", "retrained half vs half (ideal)"], [
                  ["activation distance (mean L2 of probabilities)", _fmt(m["activation_distance"]["unlearned"]),
                   _fmt(m["activation_distance"]["original"]), _fmt(m["activation_distance"]["retrained_halves"])],
                  ["JS divergence", _fmt(m["js_divergence"]["unlearned"]), _fmt(m["js_divergence"]["original"]),
                   _fmt(m["js_divergence"]["retrained_halves"])],
                  ["LiRA accuracy (Gaussian fits, per example, mean)", _fmt(m["lira_accuracy"]["unlearned"]), "—",
                   _fmt(m["lira_accuracy"]["retrained_halves"])],
                  ["binned KL (nats, per example, mean)", _fmt(m["binned_kl"]["unlearned"]), "—",
                   _fmt(m["binned_kl"]["retrained_halves"])],
                  ["unlearning time / one retrain", _fmt(m["time_vs_retrain"]), "—", "1"]])]
    v = r.get("versions", {})
    prov = [["result", html.escape(r["id"])], ["created", html.escape(r["created"])],
            ["protocol version", html.escape(r["protocol_version"])], ["profile", html.escape(r["profile"])],
            ["reference hash", html.escape(r["reference_hash"])],
            ["data", html.escape(json.dumps(r.get("data")))], ["submission", html.escape(r["submission"])],
            ["submission sha256", html.escape(r["submission_sha256"])],
            ["seeds", html.escape(_seeds(r["seeds"]))], ["versions", html.escape(json.dumps(v))],
            ["machine", html.escape(json.dumps(r.get("machine")))],
            ["isolation", html.escape(json.dumps(r.get("isolation")))]]
    parts += ["<h2>Provenance</h2>", _table(None, prov, "kv")]
    title = f"{r['submission_name']} on {r['profile']}: unlearning report"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def write(b: Bundle, out_dir: Path) -> Path:
    """index.html and metrics.json in out_dir, written atomically; returns the page's path."""
    m = compute(b)
    page = render(b, m)
    out_dir = Path(out_dir)
    paths.atomic_write_json(out_dir / "metrics.json", m)
    paths.atomic_write_bytes(out_dir / "index.html", page.encode())
    return out_dir / "index.html"


def columns(b: Bundle) -> dict:
    """The unlearned population's metric columns of the leaderboard page (cheaper than compute())."""
    f_labels = b.splits["forget"].age_group.numpy()
    t_labels = b.splits["test"].age_group.numpy()[:b.test_logits["unlearned"].shape[1]]
    p_u, p_r = metrics.probabilities(b.forget_logits["unlearned"]), metrics.probabilities(b.forget_logits["retrained"])
    return {"activation distance": metrics.activation_distance(p_u, p_r), "JS": metrics.mean_js(p_u, p_r),
            "MIA acc": _mia(b, "unlearned", f_labels, t_labels)["accuracy"],
            "LiRA acc": float(metrics.lira(b.conf["retrained"], b.conf["unlearned"]).mean()),
            "binned KL": float(metrics.binned_kl(b.conf["retrained"], b.conf["unlearned"]).mean()),
            "ZRF": metrics.zrf(p_u, _untrained_probs(b)), "forget % crop": b.tta["unlearned"]["crop"]}


def leaderboard(df, results_dir: Path, plot_png: bytes | None) -> str:
    """The ranking (harness.leaderboard.table) as a page, with the metric columns of every result
    whose runs are still on disk (a dash where they are not)."""
    import pandas as pd

    from harness.report import collect

    metric_names = ("activation distance", "JS", "MIA acc", "LiRA acc", "binned KL", "ZRF", "forget % crop")
    rows, missing = [], 0
    for _, row in df.iterrows():
        cols = {}
        try:
            cols = columns(collect.load(json.loads((Path(results_dir) / f"{row['id']}.json").read_text())))
        except (OSError, ValueError, KeyError):
            missing += 1
        rank = "—" if pd.isna(row["rank"]) else str(int(row["rank"]))  # unranked: another budget than the competition's
        rows.append([rank, html.escape(str(row["submission"])), _fmt(row["score"], ".4f"),
                     f"[{_fmt(row['ci95_low'], '.4f')}, {_fmt(row['ci95_high'], '.4f')}]",
                     _fmt(row["forget_quality"], ".4f"), _fmt(row["retain_acc"], ".1f"), _fmt(row["test_acc"], ".1f"),
                     _fmt(row["forget_acc"], ".1f"), _fmt(row["unlearning_s"], ".2f"),
                     "" if pd.isna(row["tied_with"]) else html.escape(str(row["tied_with"]))]
                    + [_fmt(cols.get(n)) for n in metric_names] + [html.escape(str(row["note"] or ""))])
    profiles = sorted(set(df["profile"])) if len(df) else []
    title = "Local leaderboard" + (f", profile {profiles[0]}" if len(profiles) == 1 else "")
    body = [f"<h1>{html.escape(title)}</h1>"]
    if plot_png:
        body.append(_img(plot_png, "score against unlearning time"))
    body.append(_table(["rank", "submission", "score", "95% CI", "F", "retain %", "test %", "forget %", "s/run",
                        "tied with", *metric_names, "note"], rows))
    body.append("<p class=note>'tied with': the ranks a row's score cannot be told apart from (a paired "
                "bootstrap of every pair, Holm-corrected, at the 5% level, made by score-all). "
                "Metric columns are the unlearned models' (see a result's report for the original "
                "and retrained values)" + (f"; {missing} result(s) without their runs on disk show dashes" if missing
                                          else "") + ".</p>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
