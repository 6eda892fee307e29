"""`python -m harness.kaggle.zip_tool [options] ARCHIVE FILE...`: the part of Info-ZIP's `zip` that
competition notebooks use (`zip submission.zip /kaggle/tmp/*.pth`), for kernels without one.

Like zip: ARCHIVE gets .zip appended when it has no extension; entries are stored under their
path as given less any leading / and ./; same-named entries of an existing archive are replaced
("updating:"); a FILE that does not exist is a warning, nothing to add at all is exit 12; an
unsupported option is exit 16. Options: -r recurse into folders, -j store base names only, -D no
folder entries, -q quiet, -0 store, -1..-9 deflate level (6 by default), -X ignored. Standard
library only: it runs in the notebook's kernel environment.
"""
from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

BAD_ARCHIVE = 3      # Info-ZIP's exit codes
NOTHING_TO_DO = 12
WRITE_ERROR = 15
BAD_ARGUMENTS = 16
READ_ERROR = 18
DEFAULT_LEVEL = 6


class UsageError(Exception):
    """Arguments zip would refuse: exit 16 with this message."""


@dataclass
class Options:
    recurse: bool = False
    junk_paths: bool = False
    no_dir_entries: bool = False
    quiet: bool = False
    level: int = DEFAULT_LEVEL
    archive: str = ""
    files: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Options:
    """Single-letter flags, combinable (-qr, -r9), anywhere on the line as Info-ZIP allows."""
    options, names = Options(), []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            raise UsageError(f"long option '{arg[2:]}' not supported")
        if not arg.startswith("-") or arg == "-":
            names.append(arg)
            continue
        for flag in arg[1:]:
            if flag == "r":
                options.recurse = True
            elif flag == "j":
                options.junk_paths = True
            elif flag == "D":
                options.no_dir_entries = True
            elif flag == "q":
                options.quiet = True
            elif flag.isdigit():
                options.level = int(flag)
            elif flag != "X":  # -X: no extra file attributes; zipfile stores none worth dropping
                raise UsageError(f"short option '{flag}' not supported")
    if not names:
        raise UsageError("no zip file name given")
    options.archive, options.files = archive_name(names[0]), names[1:]
    return options


def archive_name(name: str) -> str:
    return name if "." in os.path.basename(name) else name + ".zip"


def entry_name(path: str, junk_paths: bool) -> str:
    """The name zip stores path under: no leading / or ./ (-j: the base name only)."""
    name = path.replace(os.sep, "/").rstrip("/")
    if junk_paths:
        return name.rsplit("/", 1)[-1]
    while name.startswith(("/", "./")):
        name = name[1:] if name.startswith("/") else name[2:]
    return name


def collect(options: Options, warn) -> list[tuple[str, str]]:
    """(file on disk, entry name) to add, in order, without repeats; warns about names that do not exist."""
    archive = os.path.realpath(options.archive)
    found: dict[str, str] = {}
    for given in options.files:
        if not os.path.lexists(given):
            warn(f"\tzip warning: name not matched: {given}")
            continue
        for path in _walk(given, options.recurse):
            is_dir = os.path.isdir(path)
            name = entry_name(path, options.junk_paths)
            if (is_dir and (options.no_dir_entries or options.junk_paths)) or name in ("", ".") \
                    or os.path.realpath(path) == archive:  # zip never adds the archive to itself
                continue
            name += "/" if is_dir else ""
            if name in found and os.path.realpath(found[name]) != os.path.realpath(path):
                raise UsageError(f"cannot repeat names in zip file: {found[name]} and {path} are both {name}")
            found.setdefault(name, path)
    return [(path, name) for name, path in found.items()]


def _walk(path: str, recurse: bool):
    yield path
    if recurse and os.path.isdir(path) and not os.path.islink(path):
        for name in sorted(os.listdir(path)):
            yield from _walk(os.path.join(path, name), recurse)


def percent(stored: int, size: int) -> int:
    """Space saved, rounded as zip rounds it."""
    return 0 if size == 0 else (200 * (size - stored) // size + 1) // 2


def write(options: Options, entries: list[tuple[str, str]], say, warn) -> int:
    """The archive with entries added (replacing same-named ones), written atomically; the exit code."""
    archive = Path(options.archive)
    new = {name: path for path, name in entries}
    fd, tmp = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".tmp", dir=archive.parent)
    try:
        with os.fdopen(fd, "wb") as file, zipfile.ZipFile(file, "w", strict_timestamps=False) as out:
            status = _merge(archive, new, out, options.level, say, warn) if archive.exists() else 0
            for name, path in new.items():
                status = _add(out, path, name, options.level, "  adding", say, warn) or status
        os.chmod(tmp, archive.stat().st_mode & 0o7777 if archive.exists() else 0o666 & ~_umask())
        os.replace(tmp, archive)
    except BaseException:
        os.unlink(tmp)
        raise
    return status


def _merge(archive: Path, new: dict[str, str], out: zipfile.ZipFile, level: int, say, warn) -> int:
    """The existing archive's entries in order: kept, or replaced where they stood (as zip does).
    Replaced names are taken out of new."""
    status = 0
    with zipfile.ZipFile(archive) as old:
        for info in old.infolist():
            if info.filename in new:
                status = _add(out, new.pop(info.filename), info.filename, level, "updating", say, warn) or status
            else:
                _copy(old, info, out)
    return status


def _add(out: zipfile.ZipFile, path: str, name: str, level: int, verb: str, say, warn) -> int:
    """Adds one file or folder entry (streamed by zipfile); 0, or READ_ERROR when it cannot be read."""
    try:
        # zip stores folders and empty files; zipfile streams the file in chunks
        stored = level == 0 or name.endswith("/") or os.path.getsize(path) == 0
        out.write(path, name, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED, None if stored else level)
    except OSError as e:
        warn(f"\tzip warning: could not open for reading: {path} ({e.strerror})")
        return READ_ERROR
    info = out.getinfo(name)
    method = "stored" if stored else "deflated"
    say(f"{verb}: {name} ({method} {0 if stored else percent(info.compress_size, info.file_size)}%)")
    return 0


def _copy(old: zipfile.ZipFile, info: zipfile.ZipInfo, out: zipfile.ZipFile) -> None:
    """An entry kept from the existing archive (re-compressed in chunks: zipfile has no raw copy)."""
    kept = zipfile.ZipInfo(info.filename, info.date_time)
    kept.compress_type, kept.external_attr, kept.file_size = info.compress_type, info.external_attr, info.file_size
    if info.is_dir():
        out.writestr(kept, b"")
        return
    with old.open(info) as src, out.open(kept, "w") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warn = lambda line: print(line, file=sys.stderr)  # noqa: E731
    try:
        options = parse_args(argv)
        say = (lambda line: None) if options.quiet else print
        entries = collect(options, warn)
        if not entries:
            warn(f"zip error: Nothing to do! ({options.archive})")
            return NOTHING_TO_DO
        return write(options, entries, say, warn)
    except UsageError as e:
        warn(f"zip error: Invalid command arguments ({e})")
        return BAD_ARGUMENTS
    except zipfile.BadZipFile as e:
        warn(f"zip error: Zip file structure invalid ({options.archive}: {e})")
        return BAD_ARCHIVE
    except OSError as e:
        warn(f"zip error: {e}")
        return WRITE_ERROR


if __name__ == "__main__":
    sys.exit(main())
