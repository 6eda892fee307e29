"""Attack: start far more processes than a run needs (600 `sleep`s): nothing but a cgroup's pids
limit bounds them. Prints LEAK when all 600 started; kills what it started either way."""
import subprocess


def unlearning(net, retain_loader, forget_loader, val_loader):
    started = []
    try:
        for _ in range(600):
            started.append(subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    except OSError as e:
        print(f"stopped after {len(started)} processes: {e}")
    if len(started) == 600:
        print("LEAK: started 600 processes")
    for p in started:
        p.kill()
        p.wait()
