#!/usr/bin/env python3
"""Optuna's throughput on the task `sweep-bench coordinator` measures, for comparison.

N trials of a synthetic objective (two uniform parameters, E intermediate reports each, no
sleep) run by 2 processes sharing one study, first with SQLite (RDB) storage, then with the
journal file storage. Prints one JSON line per storage: trials/s from the first trial to the
last.
"""
import argparse
import json
import multiprocessing as mp
import os
import time


def work(storage_kind, path, name, n, epochs):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = make_storage(storage_kind, path)
    study = optuna.load_study(study_name=name, storage=storage)

    def objective(trial):
        x1 = trial.suggest_float("x1", 0.0, 1.0)
        x2 = trial.suggest_float("x2", 0.0, 1.0)
        f = (x1 - 0.5) ** 2 + (x2 - 0.5) ** 2
        for e in range(1, epochs + 1):
            trial.report(f + 1.0 / e, e)
        return f

    study.optimize(objective, n_trials=n)


def make_storage(kind, path):
    import optuna
    if kind == "sqlite":
        return f"sqlite:///{path}"
    from optuna.storages.journal import JournalFileBackend
    return optuna.storages.JournalStorage(JournalFileBackend(path))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--dir", default=".")
    a = p.parse_args()
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for kind in ("sqlite", "journal"):
        path = os.path.join(a.dir, f"optuna-{kind}.db")
        if os.path.exists(path):
            os.remove(path)
        name = "bench"
        optuna.create_study(study_name=name, storage=make_storage(kind, path),
                            sampler=optuna.samplers.RandomSampler())
        per = a.trials // a.processes
        t0 = time.perf_counter()
        procs = [mp.Process(target=work, args=(kind, path, name, per, a.epochs))
                 for _ in range(a.processes)]
        for pr in procs:
            pr.start()
        for pr in procs:
            pr.join()
        secs = time.perf_counter() - t0
        print(json.dumps({"version": optuna.__version__, "storage": kind,
                          "trials": per * a.processes, "seconds": secs,
                          "trials_per_second": per * a.processes / secs}), flush=True)


if __name__ == "__main__":
    main()
