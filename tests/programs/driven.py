"""A Python-driven sweep as W&B users write one: wandb.sweep(config) + wandb.agent(id,
function=train). `driven.py create` prints a new sweep's id; `driven.py agent ID [COUNT]`
serves it. Run by tests/tests/programs.rs."""
import os
import sys
import time

import wandb

sweep_config = {
    "method": "grid",
    "metric": {"name": "val_loss", "goal": "minimize"},
    "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
    "parameters": {
        "hidden_layer_size": {"values": [32, 16]},
        "lr": {"values": [0.01, 0.1, 0.2]},
    },
}

stopped = []


def train():
    run = wandb.init(project="driven")
    cfg = wandb.config
    # What the function writes into wandb.run.dir is kept with its trial.
    with open(os.path.join(run.dir, "model.txt"), "w") as f:
        f.write("lr=%s hidden=%s" % (cfg.lr, cfg.hidden_layer_size))
    # What it logs as media is kept too (under the run's media/).
    wandb.log({"sample": wandb.Image([[0, 255], [255, 0]], caption="checker")})
    try:
        for epoch in range(12):
            wandb.log({"val_loss": cfg.lr / cfg.hidden_layer_size, "epoch": epoch})
            time.sleep(float(os.environ.get("DRIVEN_PAUSE", "0.05")))
    except BaseException as e:  # the coordinator's stop arrives as wandb's SweepStop
        stopped.append(type(e).__name__)
        raise
    print("trained", run.id, flush=True)


if sys.argv[1] == "create":
    print(wandb.sweep(sweep_config, project="driven"))
else:
    wandb.agent(sys.argv[2], function=train, count=int(sys.argv[3]) if len(sys.argv) > 3 else None)
    print("agent done; stopped:", ",".join(stopped), flush=True)
