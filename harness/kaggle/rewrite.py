"""Minimal, listed source rewrites that let a competition notebook run here.

Competition notebooks were written to run 512 unlearning iterations on a CUDA GPU with the data
under /kaggle. `rewrite` changes only what stops them from running offline: the iteration and
checkpoint counts (K instead of 512), on a machine without a GPU the CUDA guard and hard-coded
'cuda' devices, and where /kaggle cannot be mounted the /kaggle paths. Everything else in a cell
stays byte-identical: nodes are found with `ast` and replaced by their positions in the source.
Every change is returned as a Rewrite, so that users see exactly what ran.
"""
from __future__ import annotations

import ast
import copy
import re
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nbformat

COMPETITION_ITERATIONS = 512

RULES: dict[str, str] = {
    "iterations": "runs K iterations instead of the competition's 512",
    "checkpoint-count": "expects K checkpoints instead of 512",
    "cuda-guard": "no GPU here: the guard that stops a CPU run is disabled",
    "cuda-device": "no GPU here: the device 'cuda' becomes 'cpu'",
    "cuda-method": "no GPU here: .cuda() becomes .cpu() / .to('cpu')",
    "kaggle-path": "the Kaggle input and output folders live at {root} here",
}

# Cell magics whose body is plain Python run once (or timed): their body is rewritten too.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture"}
ESCAPED_LINE = re.compile(r"[ \t]*[%!]")
CELL_MAGIC = re.compile(r"[ \t]*%%(\w*)")
CUDA_DEVICE = re.compile(r"cuda(?::\d+)?")
# On a CPU torch disables autocast / GradScaler for 'cuda' with a warning; 'cpu' would turn them on.
KEEP_CUDA_CALLS = {"autocast", "GradScaler"}
# /kaggle as a path prefix (not /home/kaggle, not /kaggle_data), with the rest of its path.
KAGGLE_PATH = re.compile(r"(?<![\w.~$/})\]-])/kaggle(?=[/'\"\s]|\Z)[^\s'\"{}\\]*")
KAGGLE = "/kaggle"


@dataclass(frozen=True)
class Rewrite:
    cell: int    # index into nb.cells (all cells, markdown included); shown counted from 1
    line: int    # 1-based line within the cell's (rewritten) source
    rule: str    # one of RULES' keys
    before: str  # the exact text replaced
    after: str   # what replaced it

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        # Cells counted from 1, as a reader counts them (markdown cells included).
        return (f"cell {self.cell + 1}, line {self.line} [{self.rule}]: {_one_line(self.before)} -> "
                f"{_one_line(self.after)}")


@dataclass(frozen=True)
class _Edit:
    start: int                 # character offsets into the cell's text
    end: int
    text: str
    rule: str
    context: tuple[int, int]   # the span shown to users as before/after; contains start..end


@dataclass(frozen=True)
class _Cell:
    text: str                  # the source edits apply to (the cell's, or IPython's transform of it)
    tree: ast.Module | None    # None: a cell magic whose body is not Python
    offsets: _Offsets | None
    strings: list[tuple[int, int]]  # spans where /kaggle paths are rewritten


class _Offsets:
    """Character offsets into a text from ast's (1-based line, UTF-8 byte column) positions."""

    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.starts = [0]
        for line in self.lines[:-1]:
            self.starts.append(self.starts[-1] + len(line) + 1)

    def at(self, line: int, col: int) -> int:
        return self.starts[line - 1] + len(self.lines[line - 1].encode()[:col].decode(errors="replace"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.at(node.lineno, node.col_offset), self.at(node.end_lineno, node.end_col_offset)


def rewrite(nb: nbformat.NotebookNode, k: int, cuda: bool,
            kaggle_root: str | None = None) -> tuple[nbformat.NotebookNode, list[Rewrite]]:
    """A rewritten deep copy of nb (the input is not modified) and the list of rewrites, in cell/line order."""
    root = _root(kaggle_root)
    out = copy.deepcopy(nb)
    cells = [_parse(_source(cell)) if cell.cell_type == "code" else None for cell in out.cells]
    counts = _count_names([cell.tree for cell in cells if cell and cell.tree])
    rewrites: list[Rewrite] = []
    for index, (nb_cell, cell) in enumerate(zip(out.cells, cells)):
        if cell is None:
            continue
        edits = _kaggle_edits(cell, root) if root is not None else []
        if cell.tree is not None:
            edits += _count_edits(cell, k, counts)
            if not cuda:
                edits += _cuda_edits(cell)
        edits = _resolve([e for e in edits if cell.text[e.start:e.end] != e.text])
        if edits:
            nb_cell.source = _apply(cell.text, edits)
            rewrites += _rewrites(index, cell.text, edits)
    return out, rewrites


def _root(kaggle_root: str | None) -> str | None:
    if kaggle_root is None:
        return None
    if re.search(r"[\s'\"\\{}]", kaggle_root):  # it goes into string literals and shell commands
        raise ValueError(f"kaggle_root {kaggle_root!r} must not contain whitespace, quotes, backslashes or braces")
    return kaggle_root.rstrip("/") or "/"


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def _parse(source: str) -> _Cell | None:
    """The cell ready for rewriting, or None when it is not Python even after IPython's transforms."""
    first = next((line for line in source.split("\n") if line.strip()), "")
    magic = CELL_MAGIC.match(first)
    if magic and magic.group(1) not in PYTHON_CELL_MAGICS:
        # %%writefile, %%bash...: the body may be anything; only /kaggle paths are rewritten.
        return _Cell(source, None, None, [(0, len(source))])
    # Line magics and shell escapes blanked out, positions unchanged.
    lines = source.split("\n")
    escaped = {i for i, line in enumerate(lines) if ESCAPED_LINE.match(line)}
    masked = "\n".join(" " * len(line) if i in escaped else line for i, line in enumerate(lines))
    tree = _ast(masked)
    if tree is not None:
        offsets = _Offsets(masked)
        shell = [(offsets.starts[i], offsets.starts[i] + len(lines[i])) for i in sorted(escaped)]
        return _Cell(source, tree, offsets, _strings(tree, offsets) + shell)
    try:  # e.g. `files = !ls`: rewrite IPython's Python for the cell instead
        from IPython.core.inputtransformer2 import TransformerManager

        text = TransformerManager().transform_cell(source)
    except Exception:
        return None
    tree = _ast(text)
    if tree is None:
        return None
    offsets = _Offsets(text)
    return _Cell(text, tree, offsets, _strings(tree, offsets))


def _ast(text: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():  # e.g. invalid escape sequences: the notebook's business
            warnings.simplefilter("ignore")
            return compile(text, "<cell>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except (SyntaxError, ValueError):
        return None


def _strings(tree: ast.Module, offsets: _Offsets) -> list[tuple[int, int]]:
    """Spans of the string literals, f-strings whole (their parts' positions differ across Pythons)."""
    spans = sorted((offsets.span(node) for node in ast.walk(tree)
                    if isinstance(node, ast.JoinedStr)
                    or (isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)))),
                   key=lambda span: (span[0], -span[1]))
    outermost: list[tuple[int, int]] = []
    for start, end in spans:
        if not outermost or start >= outermost[-1][1]:
            outermost.append((start, end))
    return outermost


def _is_competition_count(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value == COMPETITION_ITERATIONS


def _is_range(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"


def _operands(node: ast.Compare) -> list[ast.expr]:
    return [node.left, *node.comparators]


def _count_names(trees: list[ast.Module]) -> set[str]:
    """Names used anywhere in the notebook as a range() argument or a comparison operand."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            operands = node.args if _is_range(node) else _operands(node) if isinstance(node, ast.Compare) else []
            names |= {operand.id for operand in operands if isinstance(operand, ast.Name)}
    return names


def _count_edits(cell: _Cell, k: int, counts: set[str]) -> list[_Edit]:
    """512 as an iteration count, a checkpoint count, or a name later used as one."""
    span, edits = cell.offsets.span, []
    for node in ast.walk(cell.tree):
        if _is_range(node):
            edits += [_Edit(*span(arg), str(k), "iterations", span(node))
                      for arg in node.args if _is_competition_count(arg)]
        elif isinstance(node, ast.Compare):
            edits += [_Edit(*span(operand), str(k), "checkpoint-count", span(node))
                      for operand in _operands(node) if _is_competition_count(operand)]
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id in counts and _is_competition_count(node.value)):
            edits.append(_Edit(*span(node.value), str(k), "iterations", span(node)))
    return edits


def _mentions_cuda(test: ast.expr) -> bool:
    for node in ast.walk(test):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and CUDA_DEVICE.fullmatch(node.value):
            return True
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if name and ("cuda" in name.lower() or name.lower() == "device"):
            return True
    return False


def _is_cuda_string(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(CUDA_DEVICE.fullmatch(node.value))


def _function_name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _on_cuda_module(func: ast.expr) -> bool:
    """torch.cuda.<something>(...) and cuda.<something>(...): the torch.cuda module, left alone."""
    return isinstance(func, ast.Attribute) and _function_name(func.value) == "cuda"


def _cuda_edits(cell: _Cell) -> list[_Edit]:
    """The guard that refuses a CPU, 'cuda' devices and .cuda() calls, for a kernel without a GPU."""
    offsets, edits = cell.offsets, []
    span = offsets.span
    for node in ast.walk(cell.tree):
        if isinstance(node, ast.If) and _mentions_cuda(node.test):
            edits += [_Edit(*span(stmt), "pass", "cuda-guard", span(stmt))
                      for stmt in node.body if isinstance(stmt, ast.Raise)]
        elif isinstance(node, ast.Assert) and _mentions_cuda(node.test):
            edits.append(_Edit(*span(node), "pass", "cuda-guard", span(node)))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and _is_cuda_string(node.value):
            edits.append(_cuda_string_edit(cell.text, span(node.value), span(node)))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "cuda" and _function_name(func.value) != "torch":
                end = offsets.at(func.end_lineno, func.end_col_offset)
                start = end - len("cuda")
                text = "cpu()" if not node.args and not node.keywords else "to('cpu')"
                edits.append(_Edit(start, span(node)[1], text, "cuda-method", (start, span(node)[1])))
            elif _function_name(func) not in KEEP_CUDA_CALLS and not _on_cuda_module(func):
                # Shown as `map_location='cuda'`, or from the function's name on: `to('cuda')`.
                edits += [_cuda_string_edit(cell.text, span(arg), _call_context(offsets, node))
                          for arg in node.args if _is_cuda_string(arg)]
                edits += [_cuda_string_edit(cell.text, span(keyword.value), span(keyword))
                          for keyword in node.keywords if _is_cuda_string(keyword.value)]
    return edits


def _call_context(offsets: _Offsets, call: ast.Call) -> tuple[int, int]:
    """A call from its function's name on: `device('cuda')`, not `torch.nn.Linear(2, 2).to('cuda')`."""
    name = _function_name(call.func)
    start, end = offsets.span(call)
    if name is None:
        return start, end
    return offsets.at(call.func.end_lineno, call.func.end_col_offset) - len(name), end


def _cuda_string_edit(text: str, literal: tuple[int, int], context: tuple[int, int]) -> _Edit:
    """'cuda' / "cuda:0" -> 'cpu' / "cpu": only the characters between the quotes change."""
    start, end = literal
    found = CUDA_DEVICE.search(text, start, end)
    if found is None:  # implicit concatenation ('cu' 'da'): replace the whole literal
        return _Edit(start, end, "'cpu'", "cuda-device", context)
    return _Edit(found.start(), found.end(), "cpu", "cuda-device", context)


def _kaggle_edits(cell: _Cell, root: str) -> list[_Edit]:
    edits = []
    for start, end in cell.strings:
        for found in KAGGLE_PATH.finditer(cell.text[start:end]):
            path = (start + found.start(), start + found.end())
            edits.append(_Edit(path[0], path[0] + len(KAGGLE), root, "kaggle-path", path))
    return edits


def _resolve(edits: list[_Edit]) -> list[_Edit]:
    """Edits in source order; one inside another (a path in a removed raise) goes with the outer one."""
    kept: list[_Edit] = []
    for edit in sorted(edits, key=lambda e: (e.start, -e.end)):
        if not kept or edit.start >= kept[-1].end:
            kept.append(edit)
    return kept


def _apply(text: str, edits: list[_Edit], start: int = 0, end: int | None = None) -> str:
    """text[start:end] with the edits that lie inside it applied (right to left: offsets stay valid)."""
    end = len(text) if end is None else end
    out = text[start:end]
    for edit in reversed(edits):
        if start <= edit.start and edit.end <= end:
            out = out[:edit.start - start] + edit.text + out[edit.end - start:]
    return out


def _rewrites(cell: int, text: str, edits: list[_Edit]) -> list[Rewrite]:
    """One Rewrite per rule and context, with the context's text before and after all edits."""
    found: dict[tuple[str, tuple[int, int]], Rewrite] = {}
    for edit in edits:
        start, end = edit.context
        if (edit.rule, edit.context) not in found:
            found[edit.rule, edit.context] = Rewrite(cell, text.count("\n", 0, start) + 1, edit.rule,
                                                     text[start:end], _apply(text, edits, start, end))
    return [found[key] for key in sorted(found, key=lambda key: key[1])]


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.split("\n")) if "\n" in text else text
