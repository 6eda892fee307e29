from pathlib import Path


def unlearning(net, retain_loader, forget_loader, val_loader):
    Path("scratch_output.bin").write_bytes(b"\0" * 2**20)
    Path("nested/dir").mkdir(parents=True)
    Path("nested/dir/notes.txt").write_text("left behind on purpose")
    print("CWD", Path.cwd())
