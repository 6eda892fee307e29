import sys


def unlearning(net, retain_loader, forget_loader, val_loader):
    line = "x" * 1023 + "\n"
    for _ in range(4 * 1024):  # 4 MiB
        sys.stdout.write(line)
    print("LAST LINE OF OUTPUT")
