"""The README and docs/ as a newcomer meets them: the front page stays short, every link and
#anchor lands, and every command shown parses with the CLI's own parser (or names a Makefile
target whose harness arguments parse), so the docs cannot drift from the command line unseen.

Reads text only: nothing is trained, scored or installed."""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import re
import shlex
from pathlib import Path

import pytest

from harness.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

README_MAX_BYTES = 20_000
MIN_DOC_PAGES = 5
FIRST_SCREEN_LINES = 15
FRONT_COMMANDS = ("make score SUBMISSION=submissions/finetune.py", "make test")

HARNESS_PREFIXES = (("python", "-m", "harness"), ("python3", "-m", "harness"),
                    (".venv/bin/python", "-m", "harness"), ("unlearning-harness",),
                    ("harness",))  # prose's short form: `harness leaderboard --rebuild`
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[^<>]*>)$")  # SUBMISSION, F, FOLDER, <path>
BRACES = re.compile(r"^\{[\w.,-]+\}$")                         # {show,manifest,fetch}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


# --- reading markdown ---------------------------------------------------------------------------

def split_markdown(text: str):
    """(prose lines with fenced blocks blanked, [(line number, code line)] of fenced blocks).
    Line numbers are 1-based and the same in both."""
    prose, code, fence = [], [], None
    for n, line in enumerate(text.split("\n"), 1):
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)
            prose.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            else:
                code.append((n, line))
            prose.append("")
        else:
            prose.append(line)
    return prose, code


def paragraphs(prose: list[str]):
    """(first line number, text) of each run of non-blank lines: a code span never crosses one."""
    start, block = None, []
    for n, line in enumerate([*prose, ""], 1):
        if line.strip():
            start = start or n
            block.append(line)
        elif block:
            yield start, "\n".join(block)
            start, block = None, []


CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def code_spans(prose: list[str]):
    for start, text in paragraphs(prose):
        for m in CODE_SPAN.finditer(text):
            yield start + text[:m.start()].count("\n"), " ".join(m.group(2).split())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation but - and _ dropped,
    spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in prose:
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(path: Path):
    """(line number, target) of every inline link and image outside code."""
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    for start, text in paragraphs(prose):
        text = CODE_SPAN.sub(lambda m: " " * len(m.group(0).replace("\n", "")) + "\n" * m.group(0).count("\n"),
                             text)
        for m in LINK.finditer(text):
            yield start + text[:m.start()].count("\n"), m.group(1)


# --- commands -----------------------------------------------------------------------------------

def commands(path: Path):
    """(line number, command) of each command the page shows: fenced lines (a `$ ` prompt and a
    trailing `# comment` dropped) and code spans in prose, starting with a harness prefix or make
    once a leading `time` and environment assignments are set aside."""
    prose, code = split_markdown(path.read_text(encoding="utf-8"))
    found = []
    for n, line in code:
        line = re.sub(r"^\s*\$\s+", "", line)
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        found.append((n, line))
    found += list(code_spans(prose))
    for n, cmd in found:
        try:
            tokens = shlex.split(cmd)
        except ValueError:
            continue
        while tokens and (tokens[0] == "time" or ASSIGNMENT.match(tokens[0])):
            tokens = tokens[1:]
        if tokens == ["harness"]:  # the package's name, not a command
            continue
        if tokens and (tokens[0] == "make" or any(tuple(tokens[:len(p)]) == p for p in HARNESS_PREFIXES)):
            yield n, cmd


def variants(tokens: list[str]):
    """The concrete command lines a documented one stands for: each `[optional group]` left out
    or put in (every combination), each `{a,b}` not at the end taken one at a time."""
    groups, flat, i = [], [], 0
    while i < len(tokens):
        t = tokens[i]
        if t.startswith("[") and not BRACES.match(t):
            j = i
            while not tokens[j].endswith("]"):
                j += 1
                if j == len(tokens):
                    raise AssertionError(f"unclosed [ in {tokens}")
            body = [*tokens[i:j + 1]]
            body[0] = body[0][1:]
            body[-1] = body[-1][:-1]  # the same token when the group is one word: [--json]
            groups.append([b for b in body if b])
            flat.append(("group", len(groups) - 1))
            i = j + 1
        else:
            flat.append(("token", t))
            i += 1
    for keep in itertools.product((False, True), repeat=len(groups)):
        line: list[str] = []
        for kind, v in flat:
            if kind == "group":
                line += groups[v] if keep[v] else []
            else:
                line.append(v)
        alternatives = [[t] if not BRACES.match(t) or k == len(line) - 1 else t[1:-1].split(",")
                        for k, t in enumerate(line)]
        yield from (list(c) for c in itertools.product(*alternatives))


def subparsers(parser):
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def subcommands(parser, path: list[str]) -> set[str]:
    """The choices of the subparser reached by `path` (e.g. ['data'] -> show, manifest, fetch)."""
    for word in path:
        action = subparsers(parser)
        if action is None or word not in action.choices:
            return set()
        parser = action.choices[word]
    action = subparsers(parser)
    return set(action.choices) if action else set()


def names_a_command(words: list[str]) -> bool:
    """`python -m harness score-all`, `python -m harness kaggle export`: prose naming a command
    rather than a whole command line. Every word must be a subcommand, in order."""
    parser = build_parser()
    for word in words:
        action = subparsers(parser)
        if action is None or word not in action.choices:
            return False
        parser = action.choices[word]
    return bool(words)


def parse(args: list[str]) -> str | None:
    """None if the CLI's parser accepts `args`, else its error."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(args)
    except SystemExit as e:
        return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {e.code}"
    return None


def check_harness_args(args: list[str]) -> list[str]:
    """The errors of every variant of a documented harness command line (arguments after the
    program name); placeholders (F, SOURCE, <x>) stand for a value of the right type."""
    errors = []
    for v in variants(args):
        if v and BRACES.match(v[-1]):  # `data {show,manifest,fetch}`: names subcommands
            missing = set(v[-1][1:-1].split(",")) - subcommands(build_parser(), v[:-1])
            if missing:
                errors.append(f"{' '.join(v)}: no subcommand {sorted(missing)}")
            continue
        error = parse(v)
        if error and any(PLACEHOLDER.match(t) for t in v):
            error = parse(["1" if PLACEHOLDER.match(t) else t for t in v])
        if error and not names_a_command(v):
            errors.append(f"{shlex.join(v)}: {error}")
    return errors


def makefile():
    """(targets, variable defaults, target -> recipe lines) of the Makefile."""
    targets, defaults, recipes, current = set(), {}, {}, None
    for line in (REPO / "Makefile").read_text().split("\n"):
        if line.startswith("\t") and current:
            recipes[current].append(line.strip())
            continue
        current = None
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|=)\s*(.*)$", line)
        if m:
            defaults[m.group(1)] = m.group(3).strip()
            continue
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line)
        if m and not m.group(1).startswith("."):
            current = m.group(1)
            targets.add(current)
            recipes[current] = []
    return targets, defaults, recipes


def check_make(tokens: list[str]) -> list[str]:
    """`make TARGET VAR=...`: the target exists, and where its recipe runs the harness, the
    harness arguments it expands to (ARGS and the rest substituted) parse."""
    targets, defaults, recipes = makefile()
    errors = []
    for v in variants(tokens[1:]):
        assigned = dict(t.split("=", 1) for t in v if ASSIGNMENT.match(t))
        names = [t for t in v if not ASSIGNMENT.match(t)]
        if not names:
            continue  # `make`: the first target
        for target in names:
            if target not in targets:
                errors.append(f"make {target}: no such target in the Makefile ({', '.join(sorted(targets))})")
                continue
            values = {**defaults, **assigned}
            for recipe in recipes[target]:
                if " -m harness" not in recipe:
                    continue
                expanded = re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), ""), recipe)
                args = shlex.split(expanded.split(" -m harness", 1)[1])
                errors += [f"make {shlex.join(v)} -> harness {e}" for e in check_harness_args(args)]
    return errors


def check_command(cmd: str) -> list[str]:
    tokens = shlex.split(cmd)
    while tokens[0] == "time" or ASSIGNMENT.match(tokens[0]):
        tokens = tokens[1:]
    if "..." in tokens:  # `make ...`: an elision, not a command line
        return []
    if tokens[0] == "make":
        return check_make(tokens)
    prefix = next(p for p in HARNESS_PREFIXES if tuple(tokens[:len(p)]) == p)
    return check_harness_args(tokens[len(prefix):])


ALL_COMMANDS = [(p, n, c) for p in PAGES for n, c in commands(p)]


# --- the tests ----------------------------------------------------------------------------------

def test_readme_is_short_and_docs_hold_the_rest():
    size = README.stat().st_size
    assert size < README_MAX_BYTES, f"README.md is {size} bytes, over {README_MAX_BYTES}: move a section to docs/"
    pages = sorted(DOCS.glob("*.md"))
    assert len(pages) >= MIN_DOC_PAGES, f"docs/ has {len(pages)} pages, fewer than {MIN_DOC_PAGES}"


def test_the_two_commands_are_on_the_first_screen():
    first = "\n".join(README.read_text(encoding="utf-8").split("\n")[:FIRST_SCREEN_LINES])
    for cmd in FRONT_COMMANDS:
        assert re.search(rf"^{re.escape(cmd)}(\s|$)", first, re.M), \
            f"`{cmd}` left README's first {FIRST_SCREEN_LINES} lines"


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.split("#")[0]).resolve() for _, t in links(README) if not t.startswith("#")}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_anchors_resolve(page):
    broken = []
    for n, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        where = f"{page.relative_to(REPO)}:{n}: ({target})"
        if REPO not in (dest, *dest.parents):
            broken.append(f"{where} leaves the repository")
        elif not dest.exists():
            broken.append(f"{where}: {file} does not exist")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{where}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, "\n".join(broken)


def test_commands_are_found():
    """The extraction itself: a change to it that finds nothing would pass the next test vacuously."""
    shown = {c for _, _, c in ALL_COMMANDS}
    assert len(ALL_COMMANDS) >= 30, len(ALL_COMMANDS)
    assert any(c.startswith("make score SUBMISSION=") for c in shown)
    assert any(c.startswith("python -m harness kaggle run") for c in shown)
    assert any(p.parent == DOCS for p, _, _ in ALL_COMMANDS)


@pytest.mark.parametrize("page,line,cmd", ALL_COMMANDS,
                         ids=[f"{p.relative_to(REPO)}:{n}" for p, n, _ in ALL_COMMANDS])
def test_command_parses(page, line, cmd):
    errors = check_command(cmd)
    assert not errors, f"{page.relative_to(REPO)}:{line}: `{cmd}` does not parse:\n" + "\n".join(errors)


@pytest.mark.parametrize("cmd", [
    "python -m harness score SUB.py --no-such-flag",
    "python -m harness scores SUB.py",
    "python -m harness score SUB.py --oracle [x1]",
    "python -m harness data {show,manifest,nope}",
    "make scor SUBMISSION=x.py",
    'make score ARGS="--kk 64"',
    "make leaderboard [ARGS=--histories]",
    "python -m harness kaggle exports",
    "python -m harness data manifest {utkface,agedb} FOLDER",
])
def test_a_broken_command_is_caught(cmd):
    assert check_command(cmd), f"`{cmd}` should not parse"


def test_slugs_follow_github():
    assert slug("Threat model of the runner") == "threat-model-of-the-runner"
    assert slug("Why 24×24 on `default`") == "why-2424-on-default"
    assert slug("GPU and cluster") == "gpu-and-cluster"
    assert slug("`kaggle-mini`") == "kaggle-mini"


def _markdown_rows(text: str, head: str) -> dict[str, dict[str, str]]:
    """The rows of the Markdown table whose header starts with `head`, by method."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    names = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2:]):
        cells = dict(zip(names, (c.strip() for c in line.strip("|").split("|"))))
        rows[cells["method"]] = cells
    return rows


def test_the_readmes_ranking_is_the_methods_pages_ranking():
    """README's ranking is a column subset of the score-all table in docs/methods.md: the same
    methods, ranks, scores, intervals, times and ties, so one cannot be pasted without the other."""
    head = "| rank | method | tuned: trials | dev score | score |"
    short = _markdown_rows(README.read_text(), head)
    full = _markdown_rows((DOCS / "methods.md").read_text(), head)
    assert short.keys() == full.keys() and len(short) >= 21
    for method, row in short.items():
        assert row == {k: full[method][k] for k in row}, method
