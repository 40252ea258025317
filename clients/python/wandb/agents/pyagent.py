"""`wandb.agents.pyagent`: the Python agent, here `wandb.agent`."""

from .._agent import agent  # noqa: F401
