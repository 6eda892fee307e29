"""Attack: learn where the cache is from other processes: every /proc/<pid>/environ, cmdline, cwd,
open file and memory map it can read (the worker's environment holds HARNESS_CACHE_DIR), then
return a retrained model from there."""
import os

import torch


def _proc_clues():
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        for name in ("environ", "cmdline", "maps"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    text = f.read().decode(errors="replace")
            except OSError:
                continue
            for token in text.replace("\0", "\n").replace("=", "\n").split():
                if "/" in token and ("cache" in token or "reference" in token or "pool" in token):
                    yield pid, name, token
        for link in ["cwd", "root"] + [f"fd/{n}" for n in (os.listdir(f"/proc/{pid}/fd") if os.access(f"/proc/{pid}/fd", os.R_OK) else [])]:
            try:
                target = os.readlink(f"/proc/{pid}/{link}")
            except OSError:
                continue
            if target not in ("/", "/scratch") and not target.startswith(("pipe:", "/dev", "socket:", "anon_inode:")):
                yield pid, link, target


def _find(base, tail, max_depth=8):
    """Paths under base ending in tail, as a competitor would search: quickly, skipping the big
    trees that cannot hold a cache (Python installations, git objects)."""
    base = base.rstrip("/") or "/"
    for folder, dirs, files in os.walk(base):
        depth = folder[len(base):].count(os.sep)
        dirs[:] = [d for d in dirs if depth < max_depth and d not in ("site-packages", "dist-packages", ".git",
                                                                        "lib-dynload", "__pycache__", "include")]
        candidate = os.path.join(folder, tail)
        if os.path.exists(candidate):
            yield candidate


def unlearning(net, retain_loader, forget_loader, val_loader):
    for pid, where, token in _proc_clues():
        print(f"LEAK: /proc/{pid}/{where} names {token}")
        base = token.split(":")[0]
        for path in _find(base, os.path.join("retrain", "0000.pt")):
            try:
                net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                print("LEAK: read a retrained model at", path)
                return
            except Exception:
                pass
