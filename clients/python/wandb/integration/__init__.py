"""`wandb.integration`: the framework integrations scripts import."""
