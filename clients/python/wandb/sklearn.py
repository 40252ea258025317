"""`wandb.sklearn`: `plot_confusion_matrix` becomes the trial's confusion matrix; the other
plots are accepted and not kept."""

from . import _transport, plot


def plot_confusion_matrix(y_true=None, y_pred=None, labels=None, true_labels=None, pred_labels=None, normalize=False):
    """Sends the confusion matrix of `y_true` against `y_pred` at once, as W&B logs it at once.
    Classes are the distinct values of both, sorted; `labels` names them in that order."""
    t = [_transport.plain(v) for v in plot._as_list(y_true)]
    p = [_transport.plain(v) for v in plot._as_list(y_pred)]
    classes = sorted(set(t) | set(p), key=lambda v: (str(type(v)), v))
    index = {c: i for i, c in enumerate(classes)}
    names = [str(labels[i]) if labels is not None and i < len(labels) else str(c) for i, c in enumerate(classes)]
    conf = plot.confusion_from([index[v] for v in t], [index[v] for v in p], names)
    _transport.send({"confusion": conf})


def _ignored(name):
    def f(*args, **kwargs):
        _transport.notice("wandb.sklearn.%s is accepted and not kept" % name)

    f.__name__ = name
    return f


for _name in [
    "plot_classifier", "plot_regressor", "plot_clusterer", "plot_roc", "plot_precision_recall",
    "plot_learning_curve", "plot_feature_importances", "plot_summary_metrics",
    "plot_class_proportions", "plot_calibration_curve", "plot_elbow_curve", "plot_silhouette",
    "plot_residuals", "plot_outlier_candidates",
]:
    globals()[_name] = _ignored(_name)
