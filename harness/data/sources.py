"""Where a protocol's images come from: `--data SOURCE` on every command, or a profile that names one.

    synthetic                 the embedded face-age generator (harness.data.synthetic; the default)
    digits                    scikit-learn's bundled handwritten digits (offline, no identities)
    [kaggle:]FOLDER           the Kaggle layout: retain.csv, forget.csv, validation.csv, images/...
    [manifest:]FILE.csv       image_path, person_id (optional), age or label
    [celeba:]FOLDER           torchvision's CelebA layout (identity_CelebA.txt, list_attr_celeba.txt, ...)
    [cifar10:]FOLDER          torchvision's CIFAR-10 layout (cifar-10-batches-py/)

A folder's layout is recognised from its files; the `kind:` prefix names it outright. `resolve()`
turns a profile and the flags into the protocol that a run uses: the source, its content digest
(a sha256 over the source's index files and its images' names and sizes, so that models trained
on one data set are never reused for another; the folder's path is recorded but not hashed), the
number of classes, the scenario, and a name that says all of it ("quick+cifar10-1a2b3c+class-3").
`read()` gives the images at the profile's size (harness.data.table.fit) with labels and people.
"""
from __future__ import annotations

import csv
import hashlib
import importlib
import io
from pathlib import Path

import numpy as np

from harness.data.scenarios import SCENARIOS
from harness.data.table import Table
from harness.protocol import DEV_SUFFIX, PROFILES, SYNTHETIC, Protocol

KINDS = ("kaggle", "manifest", "celeba", "cifar10", "digits")
MODULES = {"kaggle": "kaggle_folder", "manifest": "manifest", "celeba": "celeba", "cifar10": "cifar", "digits": "digits"}
KNOWN_LAYOUTS = ("a Kaggle-layout folder (retain.csv, forget.csv, validation.csv, images/), a CSV manifest "
                 "(image_path, person_id, age or label), a CelebA folder (identity_CelebA.txt, list_attr_celeba.txt, "
                 "img_align_celeba/), a CIFAR-10 folder (cifar-10-batches-py/), 'digits' or 'synthetic'")


def module(kind: str):
    return importlib.import_module(f"harness.data.{MODULES[kind]}")


def parse(spec: str) -> tuple[str, str]:
    """(kind, absolute path or "") of a `--data` value; FileNotFoundError/ValueError naming the fix."""
    if spec in ("synthetic", SYNTHETIC):
        return SYNTHETIC, ""
    if spec == "digits":
        return "digits", ""
    kind, sep, rest = spec.partition(":")
    if not (sep and kind in KINDS):
        kind, rest = None, spec
    path = Path(rest).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"--data {spec}: {path} does not exist: give {KNOWN_LAYOUTS}")
    if kind is None:
        kind = detect(path)
        if kind is None:
            raise ValueError(f"--data {spec}: {path} is not a known layout: give {KNOWN_LAYOUTS} "
                             "(or name it, e.g. --data celeba:FOLDER)")
    return kind, str(path)


def detect(path: Path) -> str | None:
    if path.is_file():
        return "manifest" if path.suffix.lower() == ".csv" else None
    if (path / "retain.csv").is_file():
        return "kaggle"
    for kind in ("celeba", "cifar10"):
        if module(kind).find(path) is not None:
            return kind
    return None


def parse_scenario(spec: str) -> dict:
    """`identity[:PEOPLE]`, `random[:FRACTION]` or `class[:INDEX]` as protocol fields."""
    name, _, arg = spec.partition(":")
    if name not in SCENARIOS:
        raise ValueError(f"--scenario {spec}: unknown scenario: choose identity[:PEOPLE], random[:FRACTION] or "
                         "class[:INDEX]")
    if not arg:
        return {"scenario": name}
    field, kind, what = {"identity": ("n_forget_identities", int, "number of people"),
                         "random": ("forget_fraction", float, "fraction"), "class": ("forget_class", int, "class index")}[name]
    try:
        value = kind(arg)
    except ValueError:
        raise ValueError(f"--scenario {spec}: {arg!r} is not a {what}") from None
    if name == "identity" and value < 1:
        raise ValueError(f"--scenario {spec}: forget at least one person")
    return {"scenario": name, field: value}


def base_profile(protocol: Protocol) -> Protocol | None:
    return PROFILES.get(protocol.name.removesuffix(DEV_SUFFIX).split("+")[0])


def identities(protocol: Protocol) -> bool:
    if protocol.data_source == SYNTHETIC:
        return True
    return module(protocol.data_source).identities(Path(protocol.data_path))


def resolve(protocol: Protocol, data: str | None = None, scenario: str | None = None,
            label: str | None = None) -> Protocol:
    """The protocol with its data source and scenario settled and its content digest filled in."""
    p = protocol
    if data is not None:
        kind, path = parse(data)
        p = p.replace(data_source=kind, data_path=path, data_digest="", label="")
    if scenario:
        p = p.replace(**parse_scenario(scenario))
    if label:
        if p.data_source != "celeba":
            raise ValueError(f"--label {label}: only CelebA takes a label attribute (this source is {p.data_source})")
        p = p.replace(label=label)
    if p.data_source != SYNTHETIC:
        if p.data_source not in KINDS:
            raise ValueError(f"profile {p.name!r} names data source {p.data_source!r}: use the generator or one of "
                             f"{', '.join(KINDS)}")
        mod = module(p.data_source)
        p = p.replace(n_identities=0, images_per_identity=(0, 0), n_classes=mod.n_classes(p))
        p = p.replace(data_digest=mod.digest(Path(p.data_path), p))
    if p.scenario == "identity" and not identities(p):
        raise ValueError(f"data source {describe(p)} has no identities, so --scenario identity cannot forget whole "
                         "people: use --scenario random or --scenario class")
    return p.replace(name=_name(protocol, p))


def _name(given: Protocol, p: Protocol) -> str:
    """The profile's name, plus what differs from the profile: "+<source>", "+<scenario>", "+<precision>",
    "+public" (public seeds)."""
    base = base_profile(given)
    dev = given.name.endswith(DEV_SUFFIX)
    if base is None:
        return given.name
    name = base.name
    if (p.data_source, p.data_path, p.label) != (base.data_source, base.data_path, base.label):
        name += "+" + (p.data_source if p.data_source != SYNTHETIC else "synthetic")
        name += f"-{p.data_digest[:6]}" if p.data_path else ""
        name += f"-{p.label.replace(',', '-')}" if p.label else ""
    fields = ("scenario", "n_forget_identities", "forget_fraction", "forget_class")
    if any(getattr(p, f) != getattr(base, f) for f in fields):
        name += "+" + {"identity": f"identity-{p.n_forget_identities}", "random": f"random-{p.forget_fraction:g}",
                       "class": f"class-{p.forget_class}"}[p.scenario]
    if p.precision != base.precision:  # bf16 models are another pool and another ranking
        name += "+" + p.precision
    if p.secret_seeds != base.secret_seeds:  # a pool anyone can rebuild: another ranking too
        name += "+public" if not p.secret_seeds else "+secret"
    return name + (DEV_SUFFIX if dev else "")


def describe(protocol: Protocol) -> str:
    return protocol.data_source + (f" {protocol.data_path}" if protocol.data_path else "")


def check(protocol: Protocol) -> None:
    """ValueError unless a real source's content still matches the digest the protocol carries."""
    if protocol.data_source == SYNTHETIC:
        return
    if not protocol.data_digest:
        raise ValueError(f"profile {protocol.name!r}: data source {describe(protocol)} has no content digest: "
                         "pass the protocol through harness.data.resolve() first")
    now = module(protocol.data_source).digest(Path(protocol.data_path), protocol)
    if now != protocol.data_digest:
        raise ValueError(f"data source {describe(protocol)} changed since this protocol was resolved "
                         f"(digest {protocol.data_digest[:12]} -> {now[:12]}): run the command again")


def read(protocol: Protocol) -> Table:
    if protocol.data_source == SYNTHETIC:
        from harness.data import synthetic

        return synthetic.table(protocol)
    return module(protocol.data_source).read(Path(protocol.data_path), protocol)


def private_paths(protocol: Protocol) -> list[str]:
    """Folders that hold the whole source, test labels included: hidden from unlearning runs, which
    may not see the test set (PROTOCOL §6). A manifest's folder is hidden; images it lists outside
    that folder are not (keep a manifest beside its images)."""
    if protocol.data_source == SYNTHETIC:
        return []
    if protocol.data_source == "digits":
        import sklearn.datasets

        return [str(Path(sklearn.datasets.__file__).parent / "data")]  # digits.csv.gz and its neighbours
    path = Path(protocol.data_path)
    return [str(path.parent if path.is_file() else path)]


def provenance(protocol: Protocol) -> dict:
    return {"source": {"kind": protocol.data_source, "path": protocol.data_path or None,
                       "digest": protocol.data_digest or None, "label": protocol.label or None}}


# ---- helpers shared by the readers ---------------------------------------------------------------

class Digest:
    """sha256 over named parts: a file's bytes, or a file's name and size."""

    def __init__(self, kind: str):
        self.h = hashlib.sha256(f"{kind}\n".encode())

    def text(self, name: str, blob: bytes) -> None:
        self.h.update(f"{name} {len(blob)} {hashlib.sha256(blob).hexdigest()}\n".encode())

    def size(self, name: str, path: Path, where: str) -> None:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: image file not found ({where})") from None
        self.h.update(f"{name} {size}\n".encode())

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, expected {what}") from None


def csv_rows(path: Path, what: str, check_header) -> tuple[list[str], list[dict]]:
    """(header, rows) of a CSV file; each row a dict of stripped text with its line number under
    "_line"; blank lines skipped. `check_header(header)` raises on a wrong header before any row is
    read. ValueError naming the file and line when it is not a CSV."""
    blob = read_bytes(path, what)
    try:
        text = blob.decode("utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: not a readable CSV row ({e})") from None
    header = [c.strip() for c in rows[0]] if rows else []
    check_header(header)
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}:{n}: {len(row)} fields, the header has {len(header)}")
        out.append({k: v.strip() for k, v in zip(header, row)} | {"_line": n})
    return header, out


def age_labels(ages: np.ndarray, n_classes: int) -> tuple[np.ndarray, list]:
    from harness.data.scenarios import age_group_edges, age_groups

    edges = age_group_edges(ages, n_classes)
    return age_groups(ages, edges), edges.tolist()
