"""Where this `wandb` package was installed from, and what else is installed beside it.

`pip install sweep-hpo[wandb]` installs this package as `wandb`. In an environment that also has
W&B's own `wandb`, one has overwritten the other's files: importing then says so once, on
stderr, instead of failing in some unrelated call later. Inside a trial the worker puts this
package first on PYTHONPATH on purpose, and nothing is said."""

import os
import sys
import sysconfig

_OURS = "sweep-hpo-wandb"


def _distributions():
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7: no importlib.metadata, nothing to compare
        return []
    return list(metadata.distributions())


def _name(dist):
    try:
        return (dist.metadata["Name"] or "").lower().replace("_", "-")
    except Exception:
        return ""


def warn_if_beside_real_wandb():
    """Prints a warning when W&B's own wandb is installed in the same environment as ours."""
    if os.environ.get("SWEEP_TRIAL") or os.environ.get("SWEEP_WANDB_QUIET"):
        return
    dists = _distributions()
    names = set(_name(d) for d in dists)
    if _OURS not in names or "wandb" not in names:
        return
    real = next(d for d in dists if _name(d) == "wandb")
    print("wandb: warning: this `wandb` is sweep's compatibility package (%s), and W&B's own "
          "wandb %s is installed in the same environment; their files overwrite each other. "
          "Keep them in separate environments (python -m venv), or uninstall one of them "
          "(pip uninstall %s). Set SWEEP_WANDB_QUIET=1 to silence this."
          % (_OURS, real.version, _OURS), file=sys.stderr, flush=True)


def program(name):
    """The path of sweep's program `name` installed beside this Python (its environment's
    bin/, where pip puts the programs of `sweep-hpo`), or None."""
    folders = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    for folder in folders:
        path = os.path.join(folder or "", name)
        if folder and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None
