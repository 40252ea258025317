"""A program swept with conditional parameters: it fails (and so fails its trial) when it gets a
parameter its optimizer does not use, or lacks one it does. Run by tests/tests/programs.rs."""
import argparse
import sys

import wandb

p = argparse.ArgumentParser()
p.add_argument("--optimizer")
p.add_argument("--momentum", type=float)
p.add_argument("--beta1", type=float)
p.add_argument("--lr", type=float)
a = p.parse_args()
wants = {"sgd": set(), "momentum": {"momentum"}, "adam": {"beta1"}}[a.optimizer]
got = {k for k in ("momentum", "beta1") if getattr(a, k) is not None}
if got != wants:
    sys.exit("optimizer %s got %s, wants %s: %s" % (a.optimizer, sorted(got), sorted(wants), sys.argv))
wandb.init()
assert set(wandb.config.keys()) == {"optimizer", "lr"} | wants, dict(wandb.config.items())
wandb.log({"loss": a.lr + (a.momentum or 0) + (a.beta1 or 0)})
