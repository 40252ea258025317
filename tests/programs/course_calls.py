"""The wandb calls and imports public course repositories make (a survey of 20 of them, W&B
sweeps of an MLP assignment), each of which once ended the script; run as a sweep trial by
tests/tests/programs.rs."""
import argparse

import wandb
import wandb.agents  # noqa: F401  (imported by scripts that call wandb.agents.pyagent.agent)
from wandb.keras import WandbCallback
from wandb.integration.keras import WandbMetricsLogger  # noqa: F401

p = argparse.ArgumentParser()
p.add_argument("--x", type=float, default=1.0)
a = p.parse_args()

run_id = wandb.util.generate_id()
assert len(run_id) == 8 and run_id.isalnum(), run_id
run = wandb.init(project="course", name="x_%s" % a.x)
api = wandb.Api()  # made without error; only a query says it is not available here
wandb.save()
wandb.run.save()


class Figure(object):
    """Stands in for a matplotlib figure (matplotlib may not be installed): savefig writes a
    1×1 PNG."""

    def savefig(self, f, format=None, **kwargs):
        import struct, zlib
        def chunk(tag, data):
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


Figure.__module__ = "matplotlib.figure"
# A Keras training loop calls its callback by name.
cb = WandbCallback()
cb.set_model(None)
cb.on_train_begin()
for epoch in range(3):
    cb.on_epoch_end(epoch, {"loss": a.x / (epoch + 1), "val_accuracy": 0.5 + 0.1 * epoch})
wandb.log({"confusion": Figure(), "plain": 1.0})
try:
    api.runs("course")
except wandb.Error as e:
    print("api:", e)
wandb.finish()
