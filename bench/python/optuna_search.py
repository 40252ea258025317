#!/usr/bin/env python3
"""Optuna's search quality on the functions `sweep-bench search` uses.

For each function and seed: a study of N trials with TPESampler(seed) (Optuna's default
settings) and, when it can be imported, GPSampler(seed). Prints one JSON line per
(sampler, function) with the best value of each seed.
"""
import argparse
import json
import math


def branin(x1, x2):
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1 ** 2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]


def hartmann6(x):
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6))) for i in range(4))


def objective(fn):
    def f(trial):
        if fn == "branin":
            return branin(trial.suggest_float("x1", -5, 10), trial.suggest_float("x2", 0, 15))
        return hartmann6([trial.suggest_float(f"x{i + 1}", 0, 1) for i in range(6)])
    return f


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seeds", type=int, default=10)
    a = p.parse_args()
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    samplers = {"tpe": lambda s: optuna.samplers.TPESampler(seed=s)}
    try:
        optuna.samplers.GPSampler(seed=0)
        import scipy  # noqa: F401
        import torch  # noqa: F401
        samplers["gp"] = lambda s: optuna.samplers.GPSampler(seed=s)
    except Exception:
        pass
    for name, make in samplers.items():
        for fn in ("branin", "hartmann6"):
            best = []
            for s in range(a.seeds):
                study = optuna.create_study(sampler=make(s))
                study.optimize(objective(fn), n_trials=a.trials)
                best.append(study.best_value)
            print(json.dumps({"sampler": name, "function": fn, "version": optuna.__version__, "best": best}), flush=True)


if __name__ == "__main__":
    main()
