"""A program swept with conditional parameters and two objectives: it fails (and so fails its
trial) when it gets a parameter its optimizer does not use, or lacks one it does, and logs an
accuracy to maximize and a cost to minimize that pull against each other. Run by
tests/tests/programs.rs."""
import argparse
import math
import sys

import wandb

p = argparse.ArgumentParser()
p.add_argument("--optimizer")
p.add_argument("--momentum", type=float)
p.add_argument("--width", type=int)
p.add_argument("--lr", type=float)
a = p.parse_args()
wants = {"sgd": set(), "momentum": {"momentum"}}[a.optimizer]
got = {k for k in ("momentum",) if getattr(a, k) is not None}
if got != wants:
    sys.exit("optimizer %s got %s, wants %s: %s" % (a.optimizer, sorted(got), sorted(wants), sys.argv))
wandb.init()
assert set(wandb.config.keys()) == {"optimizer", "lr", "width"} | wants, dict(wandb.config.items())
# Wider is more accurate and costs more; a learning rate near 0.01 and momentum near 0.9 help.
acc = 1 - 0.5 * math.exp(-a.width / 64) - 0.05 * abs(math.log10(a.lr) + 2)
if a.momentum is not None:
    acc += 0.03 - 0.05 * abs(a.momentum - 0.9)
for epoch in range(1, 3):
    wandb.log({"epoch": epoch, "accuracy": acc - 0.01 / epoch, "cost": a.width * 0.5})
