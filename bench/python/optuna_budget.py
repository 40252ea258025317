#!/usr/bin/env python3
"""Optuna's TPE with its HyperbandPruner on the tabulated Fashion-MNIST surrogate, as
`sweep-bench search` runs ours (bench/src/budget.rs): two workers train in lockstep, an epoch
each per step (worker 1 first), a free worker asks for the next trial; each epoch's validation
accuracy is reported and the pruner asked. Counts the epochs trained until a reported value
reaches the target. The pruner's settings match our rule's: min_resource 2, reduction_factor
2, max_resource 10 (the longest trial). Prints one JSON line per sampler: epochs per seed
(null: not reached within --max-epochs)."""
import argparse
import json

from surrogate import Surrogate


def epochs_to_target(optuna, s, sampler, seed, target, max_epochs):
    # The pruner puts each trial in a bracket by a hash of the study's name and the trial's
    # number: a name per seed keeps a run repeatable.
    study = optuna.create_study(
        study_name=f"budget-{seed}",
        direction="maximize",
        sampler=sampler(seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=2, max_resource=10, reduction_factor=2),
    )
    slots = [None, None]
    epochs = 0
    while epochs < max_epochs:
        for k in range(2):
            if slots[k] is None:
                t = study.ask()
                slots[k] = (t, s.curve(s.suggest(t)), 0)
            t, curve, done = slots[k]
            y = curve[done]
            done += 1
            epochs += 1
            t.report(y, done)
            if y >= target:
                return epochs
            if t.should_prune():
                study.tell(t, state=optuna.trial.TrialState.PRUNED)
                slots[k] = None
            elif done == len(curve):
                study.tell(t, y)
                slots[k] = None
            else:
                slots[k] = (t, curve, done)
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--target", type=float, default=0.885)
    p.add_argument("--max-epochs", type=int, default=2000)
    a = p.parse_args()
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    s = Surrogate()
    samplers = {
        "TPE + HyperbandPruner(min_resource 2, max_resource 10, reduction_factor 2)":
            lambda seed: optuna.samplers.TPESampler(seed=seed),
        "random + HyperbandPruner(min_resource 2, max_resource 10, reduction_factor 2)":
            lambda seed: optuna.samplers.RandomSampler(seed=seed),
    }
    for name, make in samplers.items():
        epochs = [epochs_to_target(optuna, s, make, seed, a.target, a.max_epochs) for seed in range(a.seeds)]
        print(json.dumps({"sampler": name, "version": optuna.__version__, "epochs": epochs}), flush=True)


if __name__ == "__main__":
    main()
