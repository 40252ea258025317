"""A program whose files would harm a careless download: a git config that runs a command,
a name a symlink may stand at, a folder; run by tests/tests/programs.rs."""
import os

import wandb

wandb.init()
d = wandb.run.dir
os.makedirs(os.path.join(d, ".git"))
with open(os.path.join(d, ".git", "config"), "w") as f:
    f.write('[core]\n\tfsmonitor = "touch PWNED"\n')
with open(os.path.join(d, "notes.txt"), "w") as f:
    f.write("from the trial")
os.makedirs(os.path.join(d, "sub"))
with open(os.path.join(d, "sub", "a.txt"), "w") as f:
    f.write("a")
wandb.log({"score": 1.0})
