#!/usr/bin/env python3
"""Builds the tabulated Fashion-MNIST surrogate that `sweep-bench search` searches (the seed's
search space, bench/data/fashion-surrogate.json) from a sweep our built-in trainer ran.

The sweep: `random` over the seed's space with `epochs: {value: 10}` (every trial trains all ten
epochs, so a trial of 5 epochs is the first five of its curve: the engine is deterministic and
has no schedule that depends on the epoch count). The table maps every point of the space but
`epochs` (3*3*3*2*6*3*2*3 = 5,832 points) to its nearest trained trial -- ordered parameters by
the distance of their ranks over the number of steps, categorical ones by 0 or 1, ties to the
earlier trial -- so both sides of the benchmark read one function, and keeps each trained
trial's validation accuracy per epoch. Parameter counts come from the architecture (the MLP's
weights and biases, as it reports them as `param_count`).

    python3 bench/python/make_surrogate.py --store runs/surrogate.db --sweep ID \
        --out bench/data/fashion-surrogate.json
"""
import argparse
import itertools
import json
import sqlite3

# The seed's space (examples/fashion-bayes.yaml) but epochs, in this order; `ordered` ones are
# compared by rank.
SPACE = [
    ("num_layers", [3, 4, 5], True),
    ("hidden_size", [32, 64, 128], True),
    ("weight_decay", [0, 0.0005, 0.5], True),
    ("learning_rate", [0.0001, 0.001], True),
    ("optimizer", ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"], False),
    ("batch_size", [16, 32, 64], True),
    ("weight_init", ["random", "xavier"], False),
    ("activation", ["sigmoid", "tanh", "relu"], False),
]
EPOCHS = 10


def param_count(layers, hidden, inputs=784, classes=10):
    return inputs * hidden + hidden + (layers - 1) * (hidden * hidden + hidden) + hidden * classes + classes


def ranks(params):
    out = []
    for name, values, _ in SPACE:
        v = params[name]
        hit = [i for i, x in enumerate(values) if x == v or (isinstance(x, float) and float(v) == x)]
        if not hit:
            raise SystemExit(f"trial parameter {name}={v!r} is not in the seed's space")
        out.append(hit[0])
    return out


def distance(a, b):
    d = 0.0
    for (_, values, ordered), x, y in zip(SPACE, a, b):
        d += abs(x - y) / (len(values) - 1) if ordered else float(x != y)
    return d


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--sweep", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    db = sqlite3.connect(a.store)
    rows = db.execute(
        "select trial, params from trials where sweep_id = ? and state = 'finished' order by trial",
        (a.sweep,),
    ).fetchall()
    trained, curves = [], []
    for trial, params in rows:
        params = json.loads(params)
        curve = [v for (v,) in db.execute(
            "select value from metric_points where sweep_id = ? and trial = ? and name = 'val_accuracy' order by step",
            (a.sweep, trial),
        )]
        if len(curve) != EPOCHS:
            raise SystemExit(f"trial {trial} has {len(curve)} epochs of val_accuracy, expected {EPOCHS}")
        trained.append(ranks(params))
        curves.append([round(v, 6) for v in curve])
    if not trained:
        raise SystemExit(f"sweep {a.sweep} has no finished trials in {a.store}")
    table = []
    for point in itertools.product(*[range(len(v)) for _, v, _ in SPACE]):
        table.append(min(range(len(trained)), key=lambda i: (distance(point, trained[i]), i)))
    out = {
        "about": "Fashion-MNIST validation accuracy per epoch of the built-in MLP over the seed's "
                 "search space, tabulated by nearest trained trial (bench/python/make_surrogate.py)",
        "space": [{"name": n, "values": v} for n, v, _ in SPACE],
        "epochs": [5, 10],
        "trained": [dict(zip([n for n, _, _ in SPACE], t)) for t in trained],
        "curves": curves,
        "table": table,
        "param_count": [param_count(SPACE[0][1][p[0]], SPACE[1][1][p[1]])
                        for p in itertools.product(*[range(len(v)) for _, v, _ in SPACE])],
    }
    with open(a.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    best = max(c[-1] for c in curves)
    print(f"{len(trained)} trained trials, {len(table)} points, best final val_accuracy {best:.4f}")


if __name__ == "__main__":
    main()
