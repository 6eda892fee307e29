"""A notebook run: `python -m harness.kaggle.kernel INPUTS RESULT_FD CONTROL_FD`, in the sandbox.

The notebook's counterpart of harness.child. It is started in the sandbox with the Kaggle tree at
/kaggle (working directory /kaggle/working) and executes the notebook with a real Jupyter kernel
through nbclient, as Kaggle did. Before the kernel starts it writes `ready` on the control pipe
(the trusted clock starts there); at the end it writes one JSON status line on the result pipe
(ok, or the failing cell and its error) and the executed notebook. The trusted side believes
none of it: it scores only the submission.zip the notebook leaves in /kaggle/working.

The kernel's environment, set here and listed in the result:
- `zip` on PATH (harness.kaggle.zip_tool) when the notebook calls `zip submission.zip ...`;
- one torch thread on a CPU (OMP_NUM_THREADS=1), as the harness's own runs;
- an address-space limit of the profile's memory on top of what the kernel holds once torch is
  imported (an IPython start-up file, run before the first cell);
- Jupyter's runtime and IPython's profile in a private temporary folder, matplotlib on Agg.
"""
from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRACEBACK_LINES = 12

STARTUP = """\
def _harness_memory_limit(gib):
    # The notebook's memory: the profile's limit on top of the kernel with torch imported.
    import os
    import resource

    import torch  # noqa: F401
    with open('/proc/self/statm') as f:
        current = int(f.read().split()[0]) * os.sysconf('SC_PAGE_SIZE')
    limit = current + int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


_harness_memory_limit({gib})
del _harness_memory_limit
"""


def _environment(spec: dict, tmp: Path) -> None:
    """The kernel inherits this process's environment: set it up (see the module docstring)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    zip_cmd = bin_dir / "zip"
    zip_cmd.write_text(f'#!/bin/sh\nexec "{sys.executable}" -s -m harness.kaggle.zip_tool "$@"\n')
    zip_cmd.chmod(zip_cmd.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["PATH"] = os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    ipython = tmp / "ipython"
    startup = ipython / "profile_default" / "startup"
    startup.mkdir(parents=True)
    if spec.get("memory_limit_gb"):
        (startup / "00-harness-memory.py").write_text(STARTUP.format(gib=float(spec["memory_limit_gb"])))
    os.environ.update(IPYTHONDIR=str(ipython), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
                      JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
                      MPLBACKEND="agg", MPLCONFIGDIR=str(tmp / "matplotlib"), PYDEVD_DISABLE_FILE_VALIDATION="1")
    if spec.get("threads"):
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(spec["threads"])


def _failure(nb, error: Exception) -> dict:
    """The failing cell (0-based index in the notebook, and its execution count) and its error."""
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                tb = [ANSI.sub("", line) for line in out.get("traceback", [])]
                lines = "\n".join(tb).strip().splitlines()
                return {"ok": False, "stage": "cell", "cell": index, "execution_count": cell.get("execution_count"),
                        "ename": out.get("ename", ""), "evalue": ANSI.sub("", str(out.get("evalue", ""))),
                        "source": cell.source[:2000], "traceback": "\n".join(lines[-TRACEBACK_LINES:])}
    return {"ok": False, "stage": "kernel", "ename": type(error).__name__,
            "evalue": ANSI.sub("", str(error)).strip().splitlines()[-1] if str(error).strip() else ""}


def run(inputs: Path, result: int, control: int) -> int:
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    spec = json.loads((inputs / "run.json").read_text())
    # In the sandbox /kaggle is the Kaggle tree; without namespaces the notebook's paths were
    # rewritten to the tree's real place (the trusted side made both versions).
    namespaced = str(inputs) == "/inputs"
    if not namespaced:
        tempfile.tempdir = os.environ["TMPDIR"] = spec["fallback_tmp"]
    nb = nbformat.read(inputs / ("notebook.ipynb" if namespaced else "notebook-paths.ipynb"), as_version=4)
    tmp = Path(tempfile.mkdtemp(prefix="harness-kernel-"))
    _environment(spec, tmp)
    # ZeroMQ over Unix sockets: the sandbox's network namespace has no loopback interface.
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp / "kernel"))
    client = NotebookClient(nb, km=km, timeout=None, allow_errors=False, kernel_name="python3",
                            resources={"metadata": {"path": os.getcwd()}})
    os.write(control, b"ready\n")
    os.close(control)
    try:
        client.execute()
        status = {"ok": True}
    except CellExecutionError as e:
        status = _failure(nb, e)
    except DeadKernelError as e:
        status = {"ok": False, "stage": "kernel", "ename": "DeadKernelError",
                  "evalue": f"the kernel died ({e}); out of memory, or the notebook ended its own process"}
    with os.fdopen(result, "wb") as f:
        f.write((json.dumps(status) + "\n").encode() + nbformat.writes(nb).encode())
    return 0 if status["ok"] else 3


if __name__ == "__main__":
    from harness import child

    child.exit_after(lambda: child.main(run))
