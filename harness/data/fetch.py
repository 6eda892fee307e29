"""`python -m harness data fetch kaggle`: the competition's files through the `kaggle` package, where
credentials and a network exist; otherwise one line that says what to put where.

What arrives: the competition never published its face data. Its public input folder held
`empty.txt` (PROTOCOL §7) and the private data stayed with the organisers, so a download without
retain.csv is reported as such, with the alternatives."""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

COMPETITION = "neurips-2023-machine-unlearning"
LAYOUT = ("retain.csv, forget.csv, validation.csv (columns image_id, person_id, age, age_group) and "
          "images/<person>/<n>.png")


def _credentials() -> str | None:
    """Where the kaggle package would find credentials, or None."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return "environment"
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    for name in ("access_token", "kaggle.json"):
        if (folder / name).is_file():
            return str(folder / name)
    return None


def kaggle(out: Path) -> Path:
    out = Path(out).resolve()
    by_hand = (f"or put the files in a folder yourself ({LAYOUT}, PROTOCOL §2) and pass --data FOLDER")
    if _credentials() is None:
        raise RuntimeError("no Kaggle credentials: create a token at https://www.kaggle.com/settings/api and set "
                           "KAGGLE_API_TOKEN (or save it as ~/.kaggle/access_token), accept the rules at "
                           f"https://www.kaggle.com/competitions/{COMPETITION}/rules, then run this again; {by_hand}")
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
            out.mkdir(parents=True, exist_ok=True)
            api.competition_download_files(COMPETITION, path=str(out), quiet=True, unzip=True)
    except (Exception, SystemExit) as e:
        said = " ".join((str(e) or chatter.getvalue()).split())[:200]
        raise RuntimeError(f"the Kaggle download failed ({type(e).__name__}: {said}): check the network and that "
                           f"you accepted the competition's rules; {by_hand}") from None
    if not (out / "retain.csv").is_file():
        found = ", ".join(sorted(p.name for p in out.iterdir())[:5]) or "nothing"
        raise RuntimeError(f"downloaded {found} to {out}, but no retain.csv: the competition never published its "
                           "face data (its public input held empty.txt). Use your own copy in the Kaggle layout "
                           f"({LAYOUT}), CelebA (--data celeba:FOLDER), a CSV manifest, or --profile digits")
    return out
