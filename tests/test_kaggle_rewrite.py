"""harness.kaggle.rewrite: each rule, each case it must leave alone, exact sources and Rewrite lists."""
from __future__ import annotations

import copy

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from harness.kaggle.rewrite import COMPETITION_ITERATIONS, RULES, Rewrite, rewrite

GUARD = """\
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
if DEVICE != 'cuda':
    raise RuntimeError('Make sure you have added an accelerator to your notebook; the submission will fail otherwise!')
"""

LOOP = """\
for i in range(512):
    net.load_state_dict(torch.load('/kaggle/input/neurips-2023-machine-unlearning/original_model.pth'))
    unlearning(net, retain_loader, forget_loader, validation_loader)
    torch.save(net.state_dict(), f'/kaggle/tmp/unlearned_checkpoint_{i}.pth')
unlearned_ckpts = os.listdir('/kaggle/tmp')
if len(unlearned_ckpts) != 512:
    raise RuntimeError('Expected exactly 512 checkpoints. The submission will throw an exception otherwise.')
subprocess.run('zip submission.zip /kaggle/tmp/*.pth', shell=True)
"""


def notebook(*sources: str, markdown: str | None = None):
    cells = [new_markdown_cell(markdown)] if markdown is not None else []
    return new_notebook(cells=cells + [new_code_cell(source) for source in sources])


def sources(nb) -> list[str]:
    return [cell.source for cell in nb.cells]


def one_cell(source: str, k: int = 8, cuda: bool = False, root: str | None = None) -> tuple[str, list[tuple]]:
    """The rewritten source of a one-cell notebook, and its rewrites as (line, rule, before, after)."""
    out, rewrites = rewrite(notebook(source), k, cuda, root)
    return out.cells[0].source, [(r.line, r.rule, r.before, r.after) for r in rewrites]


def test_competition_notebook_on_a_cpu():
    nb = notebook(GUARD, LOOP, markdown="Runs `range(512)` on /kaggle/tmp with 'cuda'.")
    original = copy.deepcopy(nb)
    out, rewrites = rewrite(nb, 8, cuda=False)
    assert nb == original  # the input is not modified
    assert sources(out) == [
        "Runs `range(512)` on /kaggle/tmp with 'cuda'.",  # markdown: never changed
        GUARD.replace("    raise RuntimeError('Make sure you have added an accelerator to your notebook; "
                      "the submission will fail otherwise!')", "    pass"),
        LOOP.replace("range(512)", "range(8)").replace("!= 512:", "!= 8:"),
    ]
    assert [str(r) for r in rewrites] == [
        "cell 2, line 3 [cuda-guard]: raise RuntimeError('Make sure you have added an accelerator to your "
        "notebook; the submission will fail otherwise!') -> pass",
        "cell 3, line 1 [iterations]: range(512) -> range(8)",
        "cell 3, line 6 [checkpoint-count]: len(unlearned_ckpts) != 512 -> len(unlearned_ckpts) != 8",
    ]
    assert rewrites[1].to_dict() == {"cell": 2, "line": 1, "rule": "iterations",
                                     "before": "range(512)", "after": "range(8)"}
    assert all(r.rule in RULES for r in rewrites)


def test_with_a_gpu_only_the_counts_change():
    out, rewrites = rewrite(notebook(GUARD, LOOP), 3, cuda=True)
    assert sources(out) == [GUARD, LOOP.replace("range(512)", "range(3)").replace("!= 512:", "!= 3:")]
    assert [r.rule for r in rewrites] == ["iterations", "checkpoint-count"]


def test_k_equal_to_the_competition_count_rewrites_nothing():
    nb = notebook(GUARD, LOOP, "N_CHECKPOINTS = 512\nfor i in range(N_CHECKPOINTS): pass\n")
    out, rewrites = rewrite(nb, COMPETITION_ITERATIONS, cuda=True)
    assert rewrites == [] and sources(out) == sources(nb)


def test_count_name_is_rewritten_where_it_counts():
    nb = notebook("N_CHECKPOINTS = 512\nHIDDEN = 512\n", "for i in range(N_CHECKPOINTS):\n    pass\n",
                  "layer = nn.Linear(HIDDEN, 10)\n")
    out, rewrites = rewrite(nb, 4, cuda=True)
    assert sources(out)[0] == "N_CHECKPOINTS = 4\nHIDDEN = 512\n"  # HIDDEN is no count: left alone
    assert rewrites == [Rewrite(0, 1, "iterations", "N_CHECKPOINTS = 512", "N_CHECKPOINTS = 4")]


def test_count_name_compared():
    source, found = one_cell("EXPECTED = 512\nassert len(os.listdir(out)) == EXPECTED\n", k=5, cuda=True)
    assert source == "EXPECTED = 5\nassert len(os.listdir(out)) == EXPECTED\n"
    assert found == [(1, "iterations", "EXPECTED = 512", "EXPECTED = 5")]


@pytest.mark.parametrize("line, after, rule", [
    ("assert len(files) == 512", "assert len(files) == 6", "checkpoint-count"),
    ("ok = 512 <= n", "ok = 6 <= n", "checkpoint-count"),
    ("for i in range(0, 512, 2): pass", "for i in range(0, 6, 2): pass", "iterations"),
    ("for i in tqdm(range(512)): pass", "for i in tqdm(range(6)): pass", "iterations"),
])
def test_count_literals(line, after, rule):
    source, found = one_cell(line + "\n", k=6, cuda=True)
    assert source == after + "\n"
    assert [(f[0], f[1]) for f in found] == [(1, rule)]


@pytest.mark.parametrize("line", [
    "net = nn.Linear(512, 10)",
    "x = torch.zeros(512)",
    "BATCH = 512",                        # a name never used as a count
    "items = list(range(512 + 1))",       # not the literal itself
    "loader = DataLoader(ds, batch_size=512)",
])
def test_other_512s_are_left_alone(line):
    assert one_cell(line + "\n", k=6) == (line + "\n", [])


@pytest.mark.parametrize("line, after", [
    ("device = torch.device('cuda')", "device = torch.device('cpu')"),
    ('device = torch.device("cuda:0")', 'device = torch.device("cpu")'),
    ("net = net.to('cuda')", "net = net.to('cpu')"),
    ("state = torch.load(path, map_location='cuda')", "state = torch.load(path, map_location='cpu')"),
    ("x = torch.zeros(3, device='cuda:1')", "x = torch.zeros(3, device='cpu')"),
    ("DEVICE = 'cuda'", "DEVICE = 'cpu'"),
    ('DEVICE: str = "cuda"', 'DEVICE: str = "cpu"'),
])
def test_cuda_device(line, after):
    source, found = one_cell(line + "\n")
    assert source == after + "\n"
    assert [f[1] for f in found] == ["cuda-device"]


def test_cuda_device_shows_the_call_or_keyword():
    _, found = one_cell("net = nn.Sequential(nn.Linear(2, 2)).to('cuda')\nm = torch.load(p, map_location='cuda:0')\n")
    assert found == [(1, "cuda-device", "to('cuda')", "to('cpu')"),
                     (2, "cuda-device", "map_location='cuda:0'", "map_location='cpu'")]


@pytest.mark.parametrize("line", [
    "DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'",   # already 'cpu' here
    'device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")',
    "on_gpu = DEVICE == 'cuda'",
    "torch.cuda.manual_seed(0)",
    "torch.cuda.manual_seed_all(0)",
    "torch.cuda.empty_cache()",
    "torch.cuda.set_device('cuda:0')",
    "with torch.autocast('cuda'):\n    pass",                   # disabled on a CPU; 'cpu' would enable it
    "scaler = torch.amp.GradScaler('cuda')",
    "print('cuda is not here')",
    "name = 'cudatoolkit'",
    "if torch.cuda.is_available():\n    net = net.cpu()",        # a test on cuda without a raise
    "if DEVICE == 'cpu':\n    print('slow')\nelse:\n    raise SystemExit",  # only the body is a guard
])
def test_cuda_left_alone(line):
    assert one_cell(line + "\n") == (line + "\n", [])


@pytest.mark.parametrize("line, after", [
    ("net.cuda()", "net.cpu()"),
    ("x = x.cuda(non_blocking=True)", "x = x.to('cpu')"),
    ("x = x.cuda(0)", "x = x.to('cpu')"),
    ("net = Net().cuda().eval()", "net = Net().cpu().eval()"),
    ("y = f(x).cuda(\n    non_blocking=True)", "y = f(x).to('cpu')"),
    ("x = x.cuda(torch.device('cuda'))", "x = x.to('cpu')"),  # the argument goes with the call
])
def test_cuda_method(line, after):
    source, found = one_cell(line + "\n")
    assert source == after + "\n"
    assert [f[1] for f in found] == ["cuda-method"]


def test_cuda_method_rewrites():
    _, found = one_cell("net.cuda()\nx = x.cuda(non_blocking=True)\n")
    assert found == [(1, "cuda-method", "cuda()", "cpu()"),
                     (2, "cuda-method", "cuda(non_blocking=True)", "to('cpu')")]


@pytest.mark.parametrize("guard, after", [
    ("if not torch.cuda.is_available():\n    raise RuntimeError('GPU')\n",
     "if not torch.cuda.is_available():\n    pass\n"),
    ("if device.type != 'cuda':\n    print('no GPU')\n    raise RuntimeError('GPU')\nprint('go')\n",
     "if device.type != 'cuda':\n    print('no GPU')\n    pass\nprint('go')\n"),
    ("if torch.cuda.device_count() == 0: raise SystemExit(1)\n",
     "if torch.cuda.device_count() == 0: pass\n"),
    ("assert torch.cuda.is_available(), 'Add a GPU'\n", "pass\n"),
    ("if True:\n    assert DEVICE == 'cuda'\n", "if True:\n    pass\n"),
    ("if x:\n    pass\nelif DEVICE != 'cuda':\n    raise ValueError\n", "if x:\n    pass\nelif DEVICE != 'cuda':\n    pass\n"),
])
def test_cuda_guard(guard, after):
    source, found = one_cell(guard)
    assert source == after
    assert [f[1] for f in found] == ["cuda-guard"]


def test_multi_line_raise_becomes_one_pass():
    source, found = one_cell(
        "if DEVICE != 'cuda':\n"
        "    raise RuntimeError(\n"
        "        'Make sure you have added an accelerator '\n"
        "        'to your notebook')  # comment stays\n"
        "x = 1\n")
    assert source == "if DEVICE != 'cuda':\n    pass  # comment stays\nx = 1\n"
    assert found == [(2, "cuda-guard", "raise RuntimeError(\n        'Make sure you have added an accelerator '\n"
                                       "        'to your notebook')", "pass")]
    rewrites = rewrite(notebook("if DEVICE != 'cuda':\n    raise RuntimeError(\n        'GPU')\n"), 8, False)[1]
    assert str(rewrites[0]) == "cell 1, line 2 [cuda-guard]: raise RuntimeError( 'GPU') -> pass"


def test_a_raise_not_guarding_cuda_is_left_alone():
    source = "if len(files) != n:\n    raise RuntimeError('missing checkpoints')\n"
    assert one_cell(source) == (source, [])


def test_non_ascii_before_an_edit_on_the_same_line():
    source, found = one_cell("print('Déjà vu ✓ — 日本'); net.cuda(); n = range(512); d = torch.device('cuda')\n")
    assert source == "print('Déjà vu ✓ — 日本'); net.cpu(); n = range(8); d = torch.device('cpu')\n"
    assert found == [(1, "cuda-method", "cuda()", "cpu()"), (1, "iterations", "range(512)", "range(8)"),
                     (1, "cuda-device", "device('cuda')", "device('cpu')")]


def test_line_magics_and_shell_escapes_are_kept():
    cell = "%matplotlib inline\n!pip install x\n  %load_ext autoreload\nfor i in range(512):\n    net.cuda()\n"
    source, found = one_cell(cell)
    assert source == "%matplotlib inline\n!pip install x\n  %load_ext autoreload\nfor i in range(8):\n    net.cpu()\n"
    assert [(f[0], f[1]) for f in found] == [(4, "iterations"), (5, "cuda-method")]


@pytest.mark.parametrize("magic", ["%%time", "%%timeit -n 1", "%%capture out"])
def test_python_cell_magics_have_their_body_rewritten(magic):
    source, found = one_cell(f"{magic}\nfor i in range(512):\n    pass\n")
    assert source == f"{magic}\nfor i in range(8):\n    pass\n"
    assert found == [(2, "iterations", "range(512)", "range(8)")]


@pytest.mark.parametrize("cell", [
    "%%writefile helper.py\nfor i in range(512):\n    net.cuda()\n",
    "%%bash\nfor i in $(seq 512); do echo 'cuda'; done\n",
    "\n%%writefile helper.py\nx = range(512)\n",
])
def test_other_cell_magics_are_left_alone(cell):
    assert one_cell(cell) == (cell, [])


def test_cell_using_ipython_syntax_is_rewritten_through_ipython():
    source, found = one_cell("files = !ls\nfor i in range(512):\n    pass\n")
    assert source == "files = get_ipython().getoutput('ls')\nfor i in range(8):\n    pass\n"
    assert found == [(2, "iterations", "range(512)", "range(8)")]


def test_cell_using_ipython_syntax_without_rewrites_is_kept():
    cell = "files = !ls\nprint(files)"
    assert one_cell(cell) == (cell, [])


def test_unparseable_cell_is_left_alone():
    cell = "for i in range(512)\n    net.cuda()\n"  # missing colon
    assert one_cell(cell, root="/box/kaggle") == (cell, [])


def test_kaggle_paths():
    out, rewrites = rewrite(notebook(LOOP), 8, cuda=True, kaggle_root="/tmp/box/kaggle/")
    assert out.cells[0].source == (LOOP.replace("/kaggle/", "/tmp/box/kaggle/")
                                   .replace("range(512)", "range(8)").replace("!= 512:", "!= 8:"))
    assert [str(r) for r in rewrites if r.rule == "kaggle-path"] == [
        "cell 1, line 2 [kaggle-path]: /kaggle/input/neurips-2023-machine-unlearning/original_model.pth -> "
        "/tmp/box/kaggle/input/neurips-2023-machine-unlearning/original_model.pth",
        "cell 1, line 4 [kaggle-path]: /kaggle/tmp/unlearned_checkpoint_ -> /tmp/box/kaggle/tmp/unlearned_checkpoint_",
        "cell 1, line 5 [kaggle-path]: /kaggle/tmp -> /tmp/box/kaggle/tmp",
        "cell 1, line 8 [kaggle-path]: /kaggle/tmp/*.pth -> /tmp/box/kaggle/tmp/*.pth",
    ]


@pytest.mark.parametrize("line, after", [
    ("p = os.path.join('/kaggle', 'input')", "p = os.path.join('/r/kaggle', 'input')"),
    ('p = "/kaggle/working/submission.zip"', 'p = "/r/kaggle/working/submission.zip"'),
    ("os.system('ls /kaggle/input /kaggle/tmp')", "os.system('ls /r/kaggle/input /r/kaggle/tmp')"),
    ("p = Path('/kaggle') / 'tmp'  # /kaggle in a comment", "p = Path('/r/kaggle') / 'tmp'  # /kaggle in a comment"),
    ("!ls /kaggle/input", "!ls /r/kaggle/input"),
    ("files = !ls /kaggle/tmp", "files = get_ipython().getoutput('ls /r/kaggle/tmp')\n"),  # IPython's text
    ("%%writefile /kaggle/working/helper.py\nROOT = '/kaggle/input'",
     "%%writefile /r/kaggle/working/helper.py\nROOT = '/r/kaggle/input'"),
])
def test_kaggle_path_literals(line, after):
    source, found = one_cell(line, cuda=True, root="/r/kaggle")
    assert source == after
    assert found and {f[1] for f in found} == {"kaggle-path"}


@pytest.mark.parametrize("line", [
    "p = '/kaggle_data/x'",
    "p = '/xkaggle/tmp'",
    "p = '/home/kaggle/tmp'",
    "p = 'data/kaggle/tmp'",
    "kaggle = 1  # /kaggle/tmp",
])
def test_kaggle_lookalikes_are_left_alone(line):
    assert one_cell(line + "\n", root="/r/kaggle") == (line + "\n", [])


def test_kaggle_paths_only_with_a_root():
    assert one_cell("p = '/kaggle/tmp'\n") == ("p = '/kaggle/tmp'\n", [])


def test_kaggle_path_inside_a_removed_raise_goes_with_it():
    source, found = one_cell("if DEVICE != 'cuda':\n    raise RuntimeError('see /kaggle/input')\n", root="/r")
    assert source == "if DEVICE != 'cuda':\n    pass\n"
    assert [f[1] for f in found] == ["cuda-guard"]


def test_rewrites_of_several_rules_on_one_span():
    _, found = one_cell("if len(os.listdir('/kaggle/tmp')) != 512: pass\n", cuda=True, root="/r")
    assert found == [(1, "checkpoint-count", "len(os.listdir('/kaggle/tmp')) != 512", "len(os.listdir('/r/tmp')) != 8"),
                     (1, "kaggle-path", "/kaggle/tmp", "/r/tmp")]


def test_cell_metadata_and_outputs_are_kept():
    nb = notebook("for i in range(512): pass\n")
    nb.cells[0].metadata["tags"] = ["x"]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    out, _ = rewrite(nb, 2, cuda=True)
    assert out.cells[0].metadata == {"tags": ["x"]} and out.cells[0].outputs == nb.cells[0].outputs
    nbformat.validate(out)


def test_rewritten_guard_and_loop_run_here_k_times():
    if torch.cuda.is_available():  # the point of the rewrite: a machine without a GPU
        pytest.skip("this machine has a GPU: the guard's CPU branch is what is tested here")
    cell = ("import torch\n"
            "DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'\n"
            "if DEVICE != 'cuda':\n"
            "    raise RuntimeError('Make sure you have added an accelerator to your notebook!')\n"
            "net = torch.nn.Linear(512, 10).cuda()\n"
            "done = []\n"
            "for i in range(512):\n"
            "    x = torch.zeros(1, 512).cuda(non_blocking=True)\n"
            "    done.append(net(x.to(DEVICE)).shape)\n"
            "if len(done) != 512:\n"
            "    raise RuntimeError('Expected exactly 512 checkpoints.')\n")
    with pytest.raises(RuntimeError):
        exec(cell, {})
    source, _ = one_cell(cell, k=3)
    scope: dict = {}
    exec(source, scope)
    assert scope["done"] == [torch.Size([1, 10])] * 3
