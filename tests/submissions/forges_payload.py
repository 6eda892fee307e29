"""Writes the harness's `ok` status and then a payload of its own making: a state dict with the
right keys, shapes and dtypes whose first weight is a sparse tensor. It loads with weights_only; the
trusted side must refuse it as that run's failure."""
import io
import os
import sys

import torch


def unlearning(net, retain_loader, forget_loader, val_loader):
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first].to_sparse()
    buf = io.BytesIO()
    torch.save(state, buf)
    os.write(int(sys.argv[2]), b'{"ok": true}\n' + buf.getvalue())
    os._exit(0)
