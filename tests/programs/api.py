"""Every wandb call the sweep shim implements, checked from inside a trial (an assertion error
fails the trial with its traceback as the reason). Run by tests/tests/programs.rs."""
import argparse
import json
import os
import sys

import wandb

assert "sweep" in wandb.__version__, "the worker's wandb module comes first: " + wandb.__file__

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.5)
p.add_argument("--layers", type=int, default=1)
p.add_argument("--act", default="tanh")
p.add_argument("--hidden", default="[]")
args = p.parse_args()

# W&B's variables and the parameter file its agent writes.
assert os.environ["WANDB_SWEEP_ID"] == os.environ["SWEEP_SWEEP_ID"]
assert os.environ["WANDB_RUN_ID"].endswith("-" + os.environ["SWEEP_TRIAL"])
assert os.path.isfile(os.environ["WANDB_SWEEP_PARAM_PATH"])
assert open(os.environ["WANDB_SWEEP_PARAM_PATH"]).read().startswith("wandb_version: 1")
assert os.environ["OMP_NUM_THREADS"].isdigit()

wandb.login()
run = wandb.init(project="p", entity="e", name="first", group="g", tags=["t"],
                 config={"lr": 123.0, "batch": 32, "layers": 99}, reinit=True)
assert wandb.run is run and run.project == "p" and run.group == "g"
run.name = "renamed"
assert run.name == "renamed"
# The sweep's values win over the script's defaults; the script's own keys stay.
assert wandb.config.lr == args.lr == wandb.config["lr"], (wandb.config.lr, args.lr)
assert wandb.config.layers == args.layers
assert wandb.config.batch == 32 and "batch" in wandb.config
assert wandb.config.get("missing", 7) == 7
wandb.config.update({"extra": 1, "lr": 999})
assert wandb.config.extra == 1 and wandb.config.lr == args.lr
assert wandb.config.hidden == json.loads(args.hidden), (wandb.config.hidden, args.hidden)
assert set(wandb.config.as_dict()) >= {"lr", "layers", "act", "batch", "extra", "hidden"}

wandb.define_metric("val_accuracy", summary="max")
acc = [0.2, 0.9, 0.5]
for i, a in enumerate(acc):
    wandb.log({"loss": 1 - a}, commit=False)
    # Media are kept as files of the trial (media/), numbers as metrics.
    wandb.log({"val_accuracy": a * args.lr, "nested": {"x": i},
               "img": wandb.Image([[0, 255], [255, i * 100]], caption="step %d" % i)})
assert run.step == 3
# A step argument: rows are committed when the step moves on.
wandb.log({"extra_metric": 1.0}, step=10)
wandb.log({"extra_metric": 2.0}, step=11)
wandb.log({"val_accuracy": 0.0}, step=11, commit=True)
assert run.summary["extra_metric"] == 2.0
run.summary["chosen"] = 0.25
wandb.summary.update({"also": 1})
table = wandb.Table(columns=["a", "b"])
table.add_data(1, "x")
wandb.log({"table": table, "page": wandb.Html("<p>hi</p>"), "hist": wandb.Histogram([1, 2])})
wandb.watch(None)
wandb.save("*.pt")
if args.lr == 1.0:
    # scikit-learn's way: classes are the distinct values, sorted; labels name them.
    wandb.sklearn.plot_confusion_matrix(["c", "a", "b", "b"], ["c", "b", "b", "b"], labels=["cat", "dog", "emu"])
else:
    wandb.log({"cm": wandb.plot.confusion_matrix(y_true=[0, 1, 2, 2], preds=[0, 2, 2, 2],
                                                  class_names=["cat", "dog", "emu"])})
print("api-ok", run.name, flush=True)
wandb.finish()
