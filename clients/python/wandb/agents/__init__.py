"""`wandb.agents` (W&B's agent package): `wandb.agents.pyagent.agent` is `wandb.agent`."""

from . import pyagent  # noqa: F401
