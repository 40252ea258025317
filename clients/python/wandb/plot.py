"""`wandb.plot`: a confusion matrix becomes the trial's confusion matrix; the other charts are
accepted and not kept."""

from . import _transport


class CustomChart(object):
    """What `wandb.plot.*` returns; logging it is how a script hands it over."""

    def __init__(self, kind, confusion=None):
        self.kind = kind
        self.confusion = confusion


def _as_list(values):
    if values is None:
        return None
    tolist = getattr(values, "tolist", None)
    return list(tolist()) if callable(tolist) else list(values)


def confusion_from(y_true, preds, class_names=None):
    """Counts of (true class, predicted class) as {"labels", "counts"}; classes are the indices
    0..n-1, named by `class_names` (W&B's default names are Class_1, Class_2, ...)."""
    y_true = [int(_transport.plain(v)) for v in _as_list(y_true)]
    preds = [int(_transport.plain(v)) for v in _as_list(preds)]
    if len(y_true) != len(preds):
        raise ValueError("confusion_matrix: y_true has %d values and preds %d" % (len(y_true), len(preds)))
    n = max([len(class_names or [])] + [v + 1 for v in y_true + preds])
    if class_names is None:
        class_names = ["Class_%d" % (i + 1) for i in range(n)]
    labels = [str(c) for c in class_names] + [str(i) for i in range(len(class_names), n)]
    counts = [[0] * n for _ in range(n)]
    for t, p in zip(y_true, preds):
        if t < 0 or p < 0:
            raise ValueError("confusion_matrix: class indices must be >= 0")
        counts[t][p] += 1
    return {"labels": labels, "counts": counts}


def confusion_matrix(probs=None, y_true=None, preds=None, class_names=None, title=None, split_table=False):
    """W&B's `wandb.plot.confusion_matrix`: give `preds` (class indices) or `probs` (one row of
    class probabilities per example) and `y_true`."""
    if preds is None:
        if probs is None:
            raise ValueError("confusion_matrix: give preds or probs")
        rows = _as_list(probs)
        preds = [max(range(len(r)), key=lambda i, r=_as_list(r): r[i]) for r in rows]
    return CustomChart("confusion_matrix", confusion_from(y_true, preds, class_names))


def _ignored(kind):
    def make(*args, **kwargs):
        return CustomChart(kind)

    make.__name__ = kind
    return make


line = _ignored("line")
line_series = _ignored("line_series")
scatter = _ignored("scatter")
bar = _ignored("bar")
histogram = _ignored("histogram")
pr_curve = _ignored("pr_curve")
roc_curve = _ignored("roc_curve")
