"""A NumPy MLP for Fashion-MNIST/MNIST written the way the classic assignment asks for one:
argparse flags with the assignment's names, wandb.init/config/log/finish, a confusion matrix
through wandb.plot. It knows nothing of sweep: the worker runs it unchanged, as W&B's agent
would, and our `wandb` module carries what it logs to the coordinator.

    python examples/programs/train.py -e 2 -nhl 2 -sz 64 -o adam -lr 1e-3
    coordinator run examples/programs/numpy-sweep.yaml
"""
import argparse
import gzip
import os
import time

import numpy as np
import wandb

CLASSES = {
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
    "mnist": [str(i) for i in range(10)],
}
HERE = os.path.dirname(os.path.abspath(__file__))


def parser():
    p = argparse.ArgumentParser(description="Train a feed-forward network with NumPy")
    p.add_argument("-wp", "--wandb_project", default="assignment")
    p.add_argument("-we", "--wandb_entity", default=None)
    p.add_argument("-d", "--dataset", default="fashion_mnist", choices=["mnist", "fashion_mnist"])
    p.add_argument("-e", "--epochs", type=int, default=5)
    p.add_argument("-b", "--batch_size", type=int, default=32)
    p.add_argument("-l", "--loss", default="cross_entropy", choices=["mean_squared_error", "cross_entropy"])
    p.add_argument("-o", "--optimizer", default="adam",
                   choices=["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"])
    p.add_argument("-lr", "--learning_rate", type=float, default=1e-3)
    p.add_argument("-m", "--momentum", type=float, default=0.9)
    p.add_argument("-beta", "--beta", type=float, default=0.9)
    p.add_argument("-beta1", "--beta1", type=float, default=0.9)
    p.add_argument("-beta2", "--beta2", type=float, default=0.999)
    p.add_argument("-eps", "--epsilon", type=float, default=1e-8)
    p.add_argument("-w_d", "--weight_decay", type=float, default=0.0)
    p.add_argument("-w_i", "--weight_init", default="Xavier", choices=["random", "Xavier"])
    p.add_argument("-nhl", "--num_layers", type=int, default=3)
    p.add_argument("-sz", "--hidden_size", type=int, default=128)
    p.add_argument("-a", "--activation", default="ReLU", choices=["identity", "sigmoid", "tanh", "ReLU"])
    p.add_argument("--train_samples", type=int, default=0, help="use only the first N training images")
    p.add_argument("--data_dir", default=os.environ.get("SWEEP_DATA_DIR", os.path.join(HERE, "..", "..", "data")))
    p.add_argument("--seed", type=int, default=0)
    return p


def parse_args_from(values):
    """The defaults of the command line with `values` set (for a caller such as wandb.agent)."""
    args = parser().parse_args([])
    for k, v in values.items():
        setattr(args, k, v)
    return args


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(name, data_dir):
    d = os.path.join(data_dir, name.replace("_", "-"))
    x = idx(os.path.join(d, "train-images-idx3-ubyte.gz")).reshape(-1, 784) / 255.0
    y = idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    xt = idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784) / 255.0
    yt = idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    return x, y, xt, yt


ACT = {
    "identity": (lambda z: z, lambda a: np.ones_like(a)),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "ReLU": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
}


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class MLP:
    def __init__(self, sizes, act, init, rng):
        self.f, self.df = ACT[act]
        self.W, self.b = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            scale = np.sqrt(2.0 / (n_in + n_out)) if init == "Xavier" else 0.1
            self.W.append(rng.normal(0, scale, (n_in, n_out)))
            self.b.append(np.zeros(n_out))

    def forward(self, x):
        acts = [x]
        for W, b in zip(self.W[:-1], self.b[:-1]):
            acts.append(self.f(acts[-1] @ W + b))
        return acts, softmax(acts[-1] @ self.W[-1] + self.b[-1])

    def loss(self, p, y, kind):
        onehot = np.eye(p.shape[1])[y]
        if kind == "cross_entropy":
            return -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
        return np.mean(np.sum((p - onehot) ** 2, axis=1))

    def grads(self, x, y, kind, weights=None):
        W_saved = self.W
        if weights is not None:
            self.W = weights
        acts, p = self.forward(x)
        onehot = np.eye(p.shape[1])[y]
        if kind == "cross_entropy":
            dz = (p - onehot) / len(y)
        else:
            g = 2 * (p - onehot) / len(y)
            dz = p * (g - np.sum(g * p, axis=1, keepdims=True))
        gW, gb = [None] * len(self.W), [None] * len(self.W)
        for i in range(len(self.W) - 1, -1, -1):
            gW[i] = acts[i].T @ dz
            gb[i] = dz.sum(axis=0)
            if i > 0:
                dz = (dz @ self.W[i].T) * self.df(acts[i])
        self.W = W_saved
        return gW, gb


class Optimizer:
    def __init__(self, a, params):
        self.a, self.t = a, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, params, grads):
        a = self.a
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g + a.weight_decay * p
            if a.optimizer == "sgd":
                p -= a.learning_rate * g
            elif a.optimizer in ("momentum", "nag"):
                self.m[i] = a.momentum * self.m[i] + a.learning_rate * g
                p -= self.m[i]
            elif a.optimizer == "rmsprop":
                self.v[i] = a.beta * self.v[i] + (1 - a.beta) * g * g
                p -= a.learning_rate * g / (np.sqrt(self.v[i]) + a.epsilon)
            else:
                self.m[i] = a.beta1 * self.m[i] + (1 - a.beta1) * g
                self.v[i] = a.beta2 * self.v[i] + (1 - a.beta2) * g * g
                mh = self.m[i] / (1 - a.beta1 ** self.t)
                vh = self.v[i] / (1 - a.beta2 ** self.t)
                if a.optimizer == "nadam":
                    mh = a.beta1 * mh + (1 - a.beta1) * g / (1 - a.beta1 ** self.t)
                p -= a.learning_rate * mh / (np.sqrt(vh) + a.epsilon)


def evaluate(net, x, y, kind):
    _, p = net.forward(x)
    return net.loss(p, y, kind), float(np.mean(p.argmax(axis=1) == y)), p.argmax(axis=1)


def main():
    args = parser().parse_args()
    wandb.init(project=args.wandb_project, entity=args.wandb_entity, config=vars(args))
    cfg = wandb.config
    wandb.run.name = "hl_%d_sz_%d_bs_%d_ac_%s_%s" % (
        cfg.num_layers, cfg.hidden_size, cfg.batch_size, cfg.activation, cfg.optimizer)
    fit(args)
    wandb.finish()


def fit(args):
    """Trains, logging each epoch and the test confusion matrix to the current wandb run."""
    rng = np.random.default_rng(args.seed)
    x, y, xt, yt = load(args.dataset, args.data_dir)
    n_val = len(x) // 10
    xv, yv, x, y = x[-n_val:], y[-n_val:], x[:-n_val], y[:-n_val]
    if args.train_samples:
        x, y = x[:args.train_samples], y[:args.train_samples]
    net = MLP([784] + [args.hidden_size] * args.num_layers + [10], args.activation, args.weight_init, rng)
    opt_w, opt_b = Optimizer(args, net.W), Optimizer(args, net.b)
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        order = rng.permutation(len(x))
        for s in range(0, len(x), args.batch_size):
            batch = order[s:s + args.batch_size]
            look = None
            if args.optimizer == "nag":
                look = [W - args.momentum * m for W, m in zip(net.W, opt_w.m)]
            gW, gb = net.grads(x[batch], y[batch], args.loss, look)
            opt_w.step(net.W, gW)
            opt_b.step(net.b, gb)
        loss, acc, _ = evaluate(net, x, y, args.loss)
        val_loss, val_acc, _ = evaluate(net, xv, yv, args.loss)
        if not np.isfinite(loss):
            print("diverged at epoch %d" % epoch, flush=True)
            break
        wandb.log({"epoch": epoch, "loss": loss, "accuracy": acc,
                   "val_loss": val_loss, "val_accuracy": val_acc})
        print("epoch %d: loss %.4f val_accuracy %.4f (%.1fs)" % (epoch, loss, val_acc, time.time() - start), flush=True)
    test_loss, test_acc, preds = evaluate(net, xt, yt, args.loss)
    wandb.log({"test_accuracy": test_acc, "test_loss": test_loss,
               "confusion_matrix": wandb.plot.confusion_matrix(
                   y_true=yt, preds=preds, class_names=CLASSES[args.dataset])})
    # The trained network, kept with the trial: whatever is written into wandb.run.dir comes
    # back (`coordinator files SWEEP_ID --out DIR` downloads the best trial's).
    weights = {"W%d" % i: W for i, W in enumerate(net.W)}
    weights.update({"b%d" % i: b for i, b in enumerate(net.b)})
    np.savez(os.path.join(wandb.run.dir, "model.npz"), activation=args.activation, **weights)


if __name__ == "__main__":
    main()
