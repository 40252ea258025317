"""Replays cases.json's wandb.log calls on sweep's `wandb` module (clients/python, first on
PYTHONPATH) and compares the rows it sends to its worker with the rows W&B's own client wrote
(make.py). A row W&B writes with no values (`{"_step": 6}` after `wandb.log({})`) has nothing
to chart and is not sent; its step is spent all the same. Prints "ok N" or the differences and
exits 1. Run by tests/tests/programs.rs."""

import io
import json
import os
import sys

import wandb
from wandb import _transport

here = os.path.dirname(os.path.abspath(__file__))
cases = json.load(open(os.path.join(here, "cases.json")))["cases"]
bad = []
for name, case in sorted(cases.items()):
    sent = io.StringIO()
    _transport.use(sent)
    wandb.init(project="steps", reinit=True)
    for data, step, commit in case["calls"]:
        wandb.log(data, step=step, commit=commit)
    wandb.finish()
    got = []
    for line in sent.getvalue().splitlines():
        msg = json.loads(line)
        if "log" in msg:
            row = dict(msg["log"])
            row["_step"] = msg["step"]
            got.append(row)
    want = [r for r in case["rows"] if set(r) != {"_step"}]
    if got != want:
        bad.append("%s:\n  W&B:   %s\n  sweep: %s" % (name, want, got))
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("ok %d" % len(cases))
