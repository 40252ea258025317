"""A trial that says which GPUs it was given.

It writes what it sees of CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES to
$SWEEP_TEST_MARKS/<sweep>-<trial>.json, waits (up to two minutes) until `together` trials of its
sweep have written theirs — so a test sees that they ran at the same time — and logs `acc` and
whether they did.
"""

import json
import os
import time

import wandb

run = wandb.init()
marks = os.environ["SWEEP_TEST_MARKS"]
sweep = os.environ["SWEEP_SWEEP_ID"]
name = f"{sweep}-{os.environ['SWEEP_TRIAL']}.json"
seen = {
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
    "nvidia": os.environ.get("NVIDIA_VISIBLE_DEVICES", "<unset>"),
}
with open(os.path.join(marks, name + ".tmp"), "w") as f:
    json.dump(seen, f)
os.rename(os.path.join(marks, name + ".tmp"), os.path.join(marks, name))

together = int(run.config.get("together", 1))
deadline = time.time() + 120
while time.time() < deadline:
    mine = [m for m in os.listdir(marks) if m.startswith(sweep + "-") and m.endswith(".json")]
    if len(mine) >= together:
        break
    time.sleep(0.05)
wandb.log({"acc": 0.5, "together": 1 if len(mine) >= together else 0})
run.finish()
