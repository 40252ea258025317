"""The tabulated Fashion-MNIST surrogate (bench/data/fashion-surrogate.json): the seed's search
space, each point's validation accuracy per epoch and its parameter count. The same reading as
bench/src/surrogate.rs."""
import json
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "fashion-surrogate.json")


class Surrogate:
    def __init__(self, path=PATH):
        with open(path) as f:
            d = json.load(f)
        self.space = [(x["name"], x["values"]) for x in d["space"]]
        self.epochs = d["epochs"]
        self.curves = d["curves"]
        self.table = d["table"]
        self.param_counts = d["param_count"]

    def suggest(self, trial):
        """The trial's parameters, suggested as categorical ones (as `values:` lists are)."""
        p = {"epochs": trial.suggest_categorical("epochs", self.epochs)}
        for name, values in self.space:
            p[name] = trial.suggest_categorical(name, values)
        return p

    def _point(self, p):
        i = 0
        for name, values in self.space:
            i = i * len(values) + values.index(p[name])
        return i

    def curve(self, p):
        return self.curves[self.table[self._point(p)]][: p["epochs"]]

    def error(self, p):
        return 1.0 - self.curve(p)[-1]

    def error_and_size(self, p):
        return [self.error(p), self.param_counts[self._point(p)] / 1e5]
