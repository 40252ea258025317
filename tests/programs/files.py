"""A program that hands files back, each way a script does; run by tests/tests/programs.rs."""
import argparse
import os

import wandb

p = argparse.ArgumentParser()
p.add_argument("--x", type=float, default=1.0)
p.add_argument("--big", type=int, default=0)
a = p.parse_args()

run = wandb.init()
trial = os.environ["SWEEP_TRIAL"]
# Written straight into the run's directory.
with open(os.path.join(wandb.run.dir, "model.bin"), "wb") as f:
    f.write(bytes((i * int(a.x * 10)) % 251 for i in range(3000)))
# Saved with its folders below base_path; a live link: what the file holds at the end counts.
own = "work-%s" % trial
os.makedirs(os.path.join(own, "ckpt"), exist_ok=True)
with open(os.path.join(own, "ckpt", "last.txt"), "w") as f:
    f.write("epoch 1")
linked = wandb.save(os.path.join(own, "ckpt", "*.txt"), base_path=own)
assert linked == [os.path.join(wandb.run.dir, "ckpt", "last.txt")], linked
with open(os.path.join(own, "ckpt", "last.txt"), "w") as f:
    f.write("final x=%s" % a.x)
# policy="now" keeps the file as it is now.
with open("notes-%s.txt" % trial, "w") as f:
    f.write("now")
wandb.save("notes-%s.txt" % trial, policy="now")
with open("notes-%s.txt" % trial, "w") as f:
    f.write("later")
wandb.save("never-written-%s.txt" % trial)
# W&B's refusals: a glob above its base path, the base path itself, a leading '*'.
for bad, why in (("../outside.txt", "walk above"), (".", "same as the base"), ("*/x.txt", "start with '*'")):
    try:
        wandb.save(bad)
    except ValueError as e:
        assert why in str(e), (bad, e)
    else:
        raise SystemExit("wandb.save(%r) did not raise" % bad)
# Too big for the sweep's max_files_mb: left out, and said so.
if a.big:
    with open(os.path.join(wandb.run.dir, "zz-big.bin"), "wb") as f:
        f.write(b"\0" * a.big)
wandb.log({"val_accuracy": a.x})
wandb.finish()
