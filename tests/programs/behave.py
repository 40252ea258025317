"""A program that behaves as its --mode says; run by tests/tests/programs.rs."""
import argparse
import os
import signal
import sys
import time

import wandb

p = argparse.ArgumentParser()
p.add_argument("--mode", default="ok")
p.add_argument("--x", type=float, default=1.0)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--pause", type=float, default=0.0)
p.add_argument("--metrics", type=int, default=100)
p.add_argument("--name", default=None)
p.add_argument("--rename", default=None)
a = p.parse_args()

pidfile = os.environ.get("PIDFILE_DIR")
if pidfile:
    with open(os.path.join(pidfile, "%s-%s.pid" % (os.environ["SWEEP_TRIAL"], os.environ["SWEEP_ATTEMPT"])), "w") as f:
        f.write(str(os.getpid()))
if a.mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
wandb.init(name=a.name)
if a.rename:
    # Named after init, as scripts that build the name from the config do.
    wandb.run.name = a.rename
if a.mode == "long":
    # A long curve: every step logs `metrics` values; m007 spikes once, at step 1234.
    for step in range(a.steps):
        row = {"m%03d" % m: (m + 1.0) / (step + 1) for m in range(a.metrics)}
        if step == 1234:
            row["m007"] = 99.0
        row["loss"] = 1.0 / (step + 1)
        wandb.log(row)
    wandb.finish()
    sys.exit(0)
if a.mode == "steps":
    # Per-batch rows, then two calls per epoch: every value stays at its own W&B step.
    for epoch in range(a.steps):
        for batch in range(4):
            wandb.log({"batch_loss": 10 * epoch + batch})
        wandb.log({"epoch": epoch, "acc": a.x * (epoch + 1)})
        wandb.log({"epoch": epoch, "loss": 1.0 / (epoch + 1)})
    wandb.finish()
    sys.exit(0)
for step in range(a.steps):
    if a.mode == "crash" and step == 2:
        print("about to divide", flush=True)
        1 / 0
    if a.mode == "silent":
        wandb.log({"val_accuracy": 0.5, "val_loss": 1.0, "epoch": step})
    else:
        wandb.log({"loss": a.x + 1.0 / (step + 1), "epoch": step})
    # "hang": the first attempt writes nothing after its first step (it cannot notice a dead
    # worker through a broken pipe) and sleeps; a later attempt runs at once.
    if a.mode != "hang" or os.environ["SWEEP_ATTEMPT"] == "1":
        time.sleep(a.pause)
wandb.finish()
