"""Makes cases.json: W&B's own client (offline mode, no account) runs each case's wandb.log
calls, and the history rows it wrote into its run file (.wandb) are the expected rows. Run
with W&B's client installed (`pip install wandb`), from this directory:

    python make.py            # rewrites cases.json

check.py replays the same calls on sweep's `wandb` module and compares. The .wandb file is a
LevelDB-style log of protobuf records (32 KiB blocks, 7-byte record headers); the records are
parsed with W&B's own protobuf classes."""

import json
import os
import struct
import sys
import tempfile
import time

# Each case: calls of wandb.log as [data, step, commit] (null: not given).
CASES = {
    "commit_false_merges_and_an_earlier_step_is_dropped": [
        [{"a": 1}, None, None], [{"b": 2}, None, False], [{"c": 3}, None, None],
        [{"d": 4}, 5, None], [{"e": 5}, 3, None], [{"f": 6}, None, None],
        [{}, None, None], [{"g": 7}, None, None],
    ],
    "two_calls_per_epoch": [
        c for e in range(3) for c in (
            [{"epoch": e, "train_acc": 0.5 + e / 10}, None, None],
            [{"epoch": e, "val_loss": 1.0 - e / 10}, None, None],
        )
    ],
    "per_batch_then_per_epoch": [
        c for e in range(2) for c in (
            [[{"batch_loss": 2.0 - e - b / 10}, None, None] for b in range(3)]
            + [[{"epoch": e, "val_accuracy": 0.6 + e / 10}, None, None]]
        )
    ],
    "explicit_step_per_epoch_flushed_at_finish": [
        [{"loss": 1.0 / (e + 1), "epoch": e}, e, None] for e in range(3)
    ],
    "explicit_step_with_commit": [
        [{"loss": 0.5}, 0, True], [{"loss": 0.4}, 1, True], [{"acc": 0.9}, 1, None],
        [{"acc": 0.95}, 4, None], [{"loss": 0.3}, None, None],
    ],
    "a_jump_then_plain_logs": [
        [{"a": 1}, 10, None], [{"b": 2}, None, None], [{"c": 3}, None, None],
        [{"d": 4}, 11, None], [{"e": 5}, 20, False], [{"f": 6}, None, True],
    ],
    "commit_false_values_of_one_key_keep_the_last": [
        [{"x": 1}, None, False], [{"x": 2}, None, False], [{"y": 3}, None, None],
        [{"x": 4}, None, True],
    ],
}

BLOCK = 32768


def records(path):
    data = open(path, "rb").read()
    assert data[:4] == b":W&B", path
    pos, part = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield body
        elif kind == 2:
            part = body
        elif kind == 3:
            part += body
        elif kind == 4:
            yield part + body


def history(path):
    """The history rows of a finished run's file, once W&B's service has written all of it
    (its `exit` record: finish() can return before the file is complete)."""
    from wandb.proto import wandb_internal_pb2 as pb
    for _ in range(300):
        recs = []
        for body in records(path):
            rec = pb.Record()
            rec.ParseFromString(body)
            recs.append(rec)
        if any(r.WhichOneof("record_type") == "exit" for r in recs):
            break
        time.sleep(0.1)
    else:
        sys.exit("%s: no exit record after 30 s" % path)
    rows = []
    for rec in recs:
        if rec.WhichOneof("record_type") == "history":
            row = {}
            for item in rec.history.item:
                key = item.key or ".".join(item.nested_key)
                if key not in ("_runtime", "_timestamp"):
                    row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def main():
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
    import wandb
    out = {"wandb_version": wandb.__version__, "cases": {}}
    with tempfile.TemporaryDirectory() as d:
        for name, calls in CASES.items():
            run = wandb.init(project="steps", dir=d, reinit="finish_previous")
            for data, step, commit in calls:
                wandb.log(data, step=step, commit=commit)
            path = run.settings.sync_file
            run.finish()
            out["cases"][name] = {"calls": calls, "rows": history(path)}
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
