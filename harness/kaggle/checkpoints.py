"""`harness score-zip submission.zip`: score checkpoints made anywhere (Kaggle, a GPU box, a notebook
run here), exactly as the runner's output is scored.

A competition submission.zip holds unlearned_checkpoint_<i>.pth for i = 0..K-1 (under any folder,
e.g. kaggle/tmp/ as `zip` stores /kaggle/tmp/*.pth). Every entry is validated before anything is
trained or written: the count is K, the names are those, each entry is at most a few times the
size of a state dict, loads with torch.load(weights_only=True) into a state dict of the
profile's architecture, and holds only finite weights. Then each checkpoint goes through the
trusted evaluator (harness.runner.evaluate_checkpoint): accuracies, forget confidences and the
copy check against the reference pool.
"""
from __future__ import annotations

import re
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path

from harness.protocol import Protocol

NAME = re.compile(r"unlearned_checkpoint_(\d+)\.pth")
SIZE_FACTOR = 4           # an entry may be at most this many times a state dict of the architecture
SIZE_SLACK = 1 << 20


class ZipError(ValueError):
    """The zip cannot be scored; the message says what is wrong and how to fix it."""


def extract(zip_path: Path, protocol: Protocol, k: int, dest: Path) -> list[Path]:
    """Validate the zip (see the module docstring) and extract checkpoint i to dest/<i>.pth; the
    K paths in index order. ZipError naming the first problem."""
    from harness import evaluate, models

    zip_path = Path(zip_path)
    try:
        mode = zip_path.lstat().st_mode
    except FileNotFoundError:
        raise ZipError(f"{zip_path} does not exist: pass the path of a submission.zip") from None
    if not stat.S_ISREG(mode):
        raise ZipError(f"{zip_path} is not a regular file: pass the path of a submission.zip")
    if not zipfile.is_zipfile(zip_path):
        raise ZipError(f"{zip_path} is not a zip archive: a submission is the submission.zip of unlearned "
                       "checkpoints a competition notebook writes")
    original = models.build(protocol).state_dict()
    cap = SIZE_FACTOR * sum(v.numel() * v.element_size() for v in original.values()) + SIZE_SLACK
    try:
        with zipfile.ZipFile(zip_path) as zf:
            if any(n.endswith("/data.pkl") for n in zf.namelist()):  # torch.save's own zip format
                raise ZipError(f"{zip_path} is one torch checkpoint, not a submission.zip: zip the K checkpoints "
                               "as unlearned_checkpoint_<i>.pth (`zip submission.zip /kaggle/tmp/*.pth`)")
            entries: dict[int, zipfile.ZipInfo] = {}
            for info in zf.infolist():
                if info.is_dir():
                    continue
                m = NAME.fullmatch(Path(info.filename).name)
                if not m:
                    raise ZipError(f"{zip_path}: unexpected entry {info.filename!r}: a submission.zip holds only "
                                   "unlearned_checkpoint_<i>.pth files")
                i = int(m.group(1))
                if i in entries:
                    raise ZipError(f"{zip_path}: checkpoint {i} appears twice ({entries[i].filename!r} and "
                                   f"{info.filename!r})")
                entries[i] = info
            if set(entries) != set(range(k)):
                raise ZipError(_count_problem(zip_path, protocol, k, set(entries)))
            dest.mkdir(parents=True, exist_ok=True)
            out = []
            for i in range(k):
                info = entries[i]
                name = f"entry {info.filename!r} of {zip_path}"
                if info.file_size > cap:
                    raise ZipError(f"{name} is {info.file_size} bytes, more than a {protocol.arch} state dict can "
                                   f"take ({cap}): it is not a checkpoint of this architecture")
                with zf.open(info) as src:
                    blob = src.read(cap + 1)
                if len(blob) > cap:
                    raise ZipError(f"{name} is larger than its header says: the archive is corrupt")
                try:
                    evaluate.load_weights(blob, original)
                except Exception as e:  # noqa: BLE001 - every way an entry can be wrong, in one line
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise ZipError(f"{name} cannot be scored: {first}") from None
                path = dest / f"{i}.pth"
                path.write_bytes(blob)
                out.append(path)
            return out
    except zipfile.BadZipFile as e:
        raise ZipError(f"{zip_path} is corrupt: {e}") from None


def _count_problem(zip_path: Path, protocol: Protocol, k: int, found: set[int]) -> str:
    n = len(found)
    needs = f"profile {protocol.name} scores K = {k} and needs unlearned_checkpoint_0..{k - 1}.pth"
    if n >= 2 and found == set(range(n)):  # a complete submission of another size
        fix = f"pass --k {n} to score these {n}" + (" (the reference pool grows to match)" if n > k else
                                                     f", or make {k} checkpoints")
        return f"{zip_path} holds {n} checkpoints (0..{n - 1}); {needs}: {fix}"
    missing, extra = sorted(set(range(k)) - found), sorted(found - set(range(k)))
    detail = "; ".join(x for x in (f"missing {_some(missing)}" if missing else "",
                                   f"beyond K: {_some(extra)}" if extra else "") if x)
    return f"{zip_path} holds {n} checkpoint(s); {needs} ({detail})"


def _some(indices: list[int]) -> str:
    shown = ", ".join(str(i) for i in indices[:5])
    return shown + (f" and {len(indices) - 5} more" if len(indices) > 5 else "")


def evaluate(files: list[Path], protocol: Protocol, pool, workers: int, progress: bool, label: str) -> list[dict]:
    """Run-like records for validated checkpoint files, scored in worker processes."""
    from harness import parallel, runner

    jobs = [(runner.evaluate_checkpoint, (protocol.to_dict(), str(pool.dir), str(pool.data_root), pool.k, str(f), i,
                                          f"checkpoint {i} of {label}"))
            for i, f in enumerate(files)]
    records = {rec["index"]: rec for rec in parallel.run(jobs, workers, progress, desc=f"scoring {label}",
                                                         unit="checkpoint")}
    return [records[i] for i in range(len(files))]


def score_zip(zip_path: str, protocol: Protocol, k: int | None = None, workers: int | None = None,
              progress: bool = True, record: bool = True) -> dict:
    from harness import paths, reference_pool, result as result_mod, runner, score

    started = time.perf_counter()
    k = score.population(protocol, k)
    zip_path = Path(zip_path)
    work = Path(tempfile.mkdtemp(prefix="harness-zip-"))
    try:
        files = extract(zip_path, protocol, k, work)
        submission = runner.Submission(zip_path.resolve(), paths.file_sha256(zip_path))
        workers = workers or reference_pool.default_workers(protocol)
        pool = reference_pool.ensure(protocol, k, workers=workers, progress=progress)
        pool_seconds = time.perf_counter() - started
        t_runs = time.perf_counter()
        runs = evaluate(files, protocol, pool, workers, progress, zip_path.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    isolation = {"made_elsewhere": True, "refused": "checkpoints made outside the harness (score-zip)"}
    for r in runs:
        r["isolation"] = isolation
    result = result_mod.build(protocol, pool, submission, runs, None, source="submission-zip", started=started,
                              timings={"reference_pool": pool_seconds, "runs_wall": time.perf_counter() - t_runs})
    if record:
        result_mod.write(result)
    return result
