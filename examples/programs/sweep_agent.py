"""A Python-driven sweep, as W&B users write one: the script makes its sweep with
wandb.sweep(config) and runs it with wandb.agent(sweep_id, function=train). The training is the
NumPy MLP of train.py beside it. With sweep installed by pip (`pip install 'sweep-hpo[wandb]'`
and numpy, docs/INSTALL.md) and `coordinator serve` running:

    python examples/programs/sweep_agent.py                # makes a sweep and runs 6 trials
    python examples/programs/sweep_agent.py SWEEP_ID       # one more agent for that sweep
"""
import sys

import numpy as np
import wandb

import train as mlp  # examples/programs/train.py

sweep_config = {
    "name": "numpy-agent",
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "run_cap": 6,
    "parameters": {
        "hidden_layer_size": {"values": [32, 64]},
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 3e-3},
        "optimiser": {"values": ["adam", "nadam", "rmsprop"]},
        "epochs": {"value": 1},
        "train_samples": {"value": 6000},
    },
}


def train():
    with wandb.init(project="numpy-agent") as run:
        c = wandb.config
        args = mlp.parse_args_from({
            "hidden_size": c.hidden_layer_size, "learning_rate": c.lr, "optimizer": c.optimiser,
            "epochs": c.epochs, "train_samples": c.train_samples, "num_layers": 2,
        })
        run.name = "hl_%d_%s_lr_%.0e" % (c.hidden_layer_size, c.optimiser, c.lr)
        mlp.fit(args)


if __name__ == "__main__":
    sweep_id = sys.argv[1] if len(sys.argv) > 1 else wandb.sweep(sweep_config, project="numpy-agent")
    wandb.agent(sweep_id, function=train)
    print("sweep", sweep_id, "done")
