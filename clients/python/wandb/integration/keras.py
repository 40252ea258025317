"""`wandb.integration.keras`: the same callbacks as `wandb.keras`."""

from ..keras import WandbCallback, WandbMetricsLogger, WandbModelCheckpoint  # noqa: F401
