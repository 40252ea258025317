#!/usr/bin/env python3
"""Optuna's multi-objective samplers on the functions `sweep-bench search` uses for several
objectives (ZDT1-3 on 30 variables, DTLZ2 with 3 objectives on 12).

For each sampler (NSGAIISampler, TPESampler; Optuna's default settings, seed s) and function:
one study per seed of N trials. Prints one JSON line per (sampler, function) holding every
trial's objectives per seed; the Rust side computes the hypervolume, so both sides are measured
by the same code.
"""
import argparse
import json
import math


def zdt(which, x):
    f1 = x[0]
    g = 1 + 9 * sum(x[1:]) / (len(x) - 1)
    r = f1 / g
    if which == 1:
        h = 1 - math.sqrt(r)
    elif which == 2:
        h = 1 - r * r
    else:
        h = 1 - math.sqrt(r) - r * math.sin(10 * math.pi * f1)
    return [f1, g * h]


def dtlz2(x, m=3):
    g = sum((v - 0.5) ** 2 for v in x[m - 1:])
    out = []
    for i in range(m):
        f = 1 + g
        for v in x[:m - 1 - i]:
            f *= math.cos(v * math.pi / 2)
        if i > 0:
            f *= math.sin(x[m - 1 - i] * math.pi / 2)
        out.append(f)
    return out


# (function, variables, objectives): the suite of bench/src/pareto.rs.
SUITE = [("zdt1", 30, 2), ("zdt2", 30, 2), ("zdt3", 30, 2), ("dtlz2", 12, 3)]


# Accuracy against size: the seed's space on the Fashion-MNIST surrogate, minimising the final
# validation error and the parameter count in units of 1e5 (bench/src/pareto.rs SURROGATE).
SURROGATE = ("fashion", 10, 2)


def objective(fn, dims):
    if fn == SURROGATE[0]:
        from surrogate import Surrogate
        s = Surrogate()
        return lambda trial: s.error_and_size(s.suggest(trial))

    def f(trial):
        x = [trial.suggest_float(f"x{i + 1:02d}", 0, 1) for i in range(dims)]
        return dtlz2(x) if fn == "dtlz2" else zdt(int(fn[3]), x)
    return f


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--functions", default="", help="only these functions (comma-separated)")
    a = p.parse_args()
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    samplers = {
        "nsga2": lambda s: optuna.samplers.NSGAIISampler(seed=s),
        "tpe": lambda s: optuna.samplers.TPESampler(seed=s),
    }
    for name, make in samplers.items():
        chosen = [f for f in a.functions.split(",") if f]
        for fn, dims, m in SUITE + [SURROGATE]:
            if chosen and fn not in chosen:
                continue
            runs = []
            for s in range(a.seeds):
                study = optuna.create_study(directions=["minimize"] * m, sampler=make(s))
                study.optimize(objective(fn, dims), n_trials=a.trials)
                runs.append([t.values for t in study.trials if t.values is not None])
            print(json.dumps({"sampler": name, "function": fn, "version": optuna.__version__, "runs": runs}), flush=True)


if __name__ == "__main__":
    main()
