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


A3 = [[3, 10, 30], [0.1, 10, 35], [3, 10, 30], [0.1, 10, 35]]
P3 = [[0.3689, 0.1170, 0.2673], [0.4699, 0.4387, 0.7470], [0.1091, 0.8732, 0.5547], [0.0381, 0.5743, 0.8828]]


def hartmann3(x):
    return -sum(ALPHA[i] * math.exp(-sum(A3[i][j] * (x[j] - P3[i][j]) ** 2 for j in range(3))) for i in range(4))


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def levy(x):
    w = [1 + (v - 1) / 4 for v in x]
    mid = sum((wi - 1) ** 2 * (1 + 10 * math.sin(math.pi * wi + 1) ** 2) for wi in w[:-1])
    return math.sin(math.pi * w[0]) ** 2 + mid + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)


def ackley(x):
    d = len(x)
    return (-20 * math.exp(-0.2 * math.sqrt(sum(v * v for v in x) / d))
            - math.exp(sum(math.cos(2 * math.pi * v) for v in x) / d) + 20 + math.e)


def styblinski_tang(x):
    return sum(v ** 4 - 16 * v * v + 5 * v for v in x) / 2


# (function, dimensions, bounds): the suite of bench/src/search.rs.
SUITE = [("branin", 2, None), ("hartmann3", 3, (0, 1)), ("hartmann6", 6, (0, 1)),
         ("rosenbrock", 4, (-5, 10)), ("levy", 6, (-10, 10)), ("ackley", 5, (-32.768, 32.768)),
         ("styblinski_tang", 8, (-5, 5))]
FUNCTIONS = {"hartmann3": hartmann3, "hartmann6": hartmann6, "rosenbrock": rosenbrock, "levy": levy,
             "ackley": ackley, "styblinski_tang": styblinski_tang}


# The mixed integer/categorical function: the seed's space on the Fashion-MNIST surrogate,
# minimising the final validation error (bench/src/search.rs SURROGATE).
SURROGATE = "fashion"


def objective(fn):
    if fn == SURROGATE:
        from surrogate import Surrogate
        s = Surrogate()
        return lambda trial: s.error(s.suggest(trial))
    _, dims, bounds = next(s for s in SUITE if s[0] == fn)

    def f(trial):
        if fn == "branin":
            return branin(trial.suggest_float("x1", -5, 10), trial.suggest_float("x2", 0, 15))
        return FUNCTIONS[fn]([trial.suggest_float(f"x{i + 1}", *bounds) for i in range(dims)])
    return f


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--functions", default="", help="only these functions (comma-separated)")
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
        chosen = [f for f in a.functions.split(",") if f]
        for fn in [x[0] for x in SUITE] + [SURROGATE]:
            if chosen and fn not in chosen:
                continue
            best = []
            for s in range(a.seeds):
                study = optuna.create_study(sampler=make(s))
                study.optimize(objective(fn), n_trials=a.trials)
                best.append(study.best_value)
            print(json.dumps({"sampler": name, "function": fn, "version": optuna.__version__, "best": best}), flush=True)


if __name__ == "__main__":
    main()
