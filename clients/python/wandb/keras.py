"""`from wandb.keras import WandbCallback` (and `wandb.integration.keras`): a Keras callback that
logs each epoch's `logs` (loss, accuracy, val_loss, ...) with `wandb.log`, as W&B's does. It
needs no Keras to import; Keras calls its methods by name."""

import wandb


class _Callback(object):
    """What Keras calls on a callback; the ones that log are overridden below."""

    def __init__(self, *args, **kwargs):
        self.model = None
        self.params = {}
        self.validation_data = None

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def __getattr__(self, name):
        # on_train_begin, on_batch_end, on_predict_end, ...: nothing to do.
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


class WandbCallback(_Callback):
    """W&B's classic callback: each epoch's metrics are logged (saving models, gradients and
    sample predictions is accepted and not done)."""

    def on_epoch_end(self, epoch, logs=None):
        row = {k: v for k, v in (logs or {}).items()}
        row["epoch"] = epoch
        wandb.log(row)


class WandbMetricsLogger(WandbCallback):
    """The newer `wandb.integration.keras.WandbMetricsLogger`: logs per epoch as well."""


class WandbModelCheckpoint(_Callback):
    """Accepted; models are not kept through it (a script can save into `wandb.run.dir`)."""
