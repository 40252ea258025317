#!/usr/bin/env python3
"""Reference implementations of the benchmark MLP, for `sweep-bench train`.

Trains the same model as `worker train` (784-H-...-10, ReLU, softmax + cross-entropy, Adam,
Xavier-uniform weights, zero biases) on the same Fashion-MNIST training split size, in PyTorch
or NumPy, and prints one JSON object: seconds per epoch (training only), samples/s, and the test
accuracy. Reads the repository's IDX .gz files; needs no network.
"""
import argparse
import gzip
import json
import os
import sys
import time


def load_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir, dataset):
    sub = {"fashion_mnist": "fashion-mnist", "mnist": "mnist"}[dataset]
    d = os.path.join(data_dir, sub)
    x = load_idx(os.path.join(d, "train-images-idx3-ubyte.gz")).reshape(60000, -1)
    y = load_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    xt = load_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")).reshape(10000, -1)
    yt = load_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
    return x, y, xt, yt


def run_torch(a, x, y, xt, yt):
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    sizes = [784] + [a.hidden] * a.layers + [10]
    mods = []
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1])
        torch.nn.init.xavier_uniform_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
        mods.append(lin)
        if i < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs = torch.from_numpy(x.copy())
    ys = torch.from_numpy(y.astype("int64"))
    n = xs.shape[0]
    g = torch.Generator().manual_seed(a.seed)
    times = []
    for _ in range(a.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            xb = xs[idx].float().div_(255.0)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), ys[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        pred = model(torch.from_numpy(xt).float() / 255.0).argmax(1).numpy()
    return times, float((pred == yt).mean())


def run_numpy(a, x, y, xt, yt):
    import numpy as np
    rng = np.random.default_rng(a.seed)
    sizes = [784] + [a.hidden] * a.layers + [10]
    W, b = [], []
    for i in range(len(sizes) - 1):
        lim = np.sqrt(6.0 / (sizes[i] + sizes[i + 1]))
        W.append(rng.uniform(-lim, lim, (sizes[i], sizes[i + 1])).astype(np.float32))
        b.append(np.zeros(sizes[i + 1], np.float32))
    params = W + b
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    n = x.shape[0]
    times = []

    def forward(xb):
        acts = [xb]
        for i in range(len(W)):
            z = acts[-1] @ W[i] + b[i]
            acts.append(np.maximum(z, 0) if i < len(W) - 1 else z)
        return acts

    for _ in range(a.epochs):
        t0 = time.perf_counter()
        perm = rng.permutation(n)
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            xb = x[idx].astype(np.float32) / 255.0
            acts = forward(xb)
            z = acts[-1]
            z = z - z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            d = p
            d[np.arange(len(idx)), y[idx]] -= 1
            d /= len(idx)
            gW, gb = [None] * len(W), [None] * len(W)
            for l in range(len(W) - 1, -1, -1):
                gW[l] = acts[l].T @ d
                gb[l] = d.sum(0)
                if l > 0:
                    d = (d @ W[l].T) * (acts[l] > 0)
            t += 1
            for j, (pp, gg) in enumerate(zip(params, gW + gb)):
                m[j] = b1 * m[j] + (1 - b1) * gg
                v[j] = b2 * v[j] + (1 - b2) * gg * gg
                mh = m[j] / (1 - b1 ** t)
                vh = v[j] / (1 - b2 ** t)
                pp -= a.lr * mh / (np.sqrt(vh) + eps)
        times.append(time.perf_counter() - t0)
    pred = forward(xt.astype(np.float32) / 255.0)[-1].argmax(1)
    return times, float((pred == yt).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--framework", choices=["torch", "numpy"], required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-samples", type=int, default=54000)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.framework == "numpy":
        # Thread count for NumPy's BLAS must be set before numpy is imported.
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[k] = str(a.threads)
    x, y, xt, yt = load(a.data_dir, a.dataset)
    x, y = x[:a.train_samples], y[:a.train_samples]
    run = run_torch if a.framework == "torch" else run_numpy
    times, acc = run(a, x, y, xt, yt)
    med = sorted(times)[len(times) // 2]
    print(json.dumps({
        "framework": a.framework,
        "batch_size": a.batch_size,
        "threads": a.threads,
        "train_samples": len(y),
        "epoch_seconds": times,
        "median_epoch_seconds": med,
        "samples_per_second": len(y) / med,
        "test_accuracy": acc,
    }))


if __name__ == "__main__":
    sys.exit(main())
