"""FLUTE's reference FL workload, synthetic: MNIST-shaped softmax regression (784 pixel features,
10 classes), clients holding non-IID label shards (McMahan et al. 2017: the training rows sorted
by label, cut into 2 shards per client), and the plain FedAvg loop privcity is measured against.

No download: the images are drawn from a seed. Each class has a prototype (a blurred random
field, its brightest fifth lit as strokes); an image is its class's prototype at a random
brightness plus a low-rank "handwriting style" and pixel noise, shifted down and clipped to
[0, 1] so that most background pixels are exactly 0, then rounded to 1/255 (MNIST's pixels):
stored as uint8, a CSV holds them as integers 0..255 (as the common mnist_train.csv does).

The plain loop (:func:`fedavg_plain`) is the anchor: per round, each sampled client runs SGD on
its rows (the same float32 math as privcity's softmax regression: a bias column of ones, the
mean cross-entropy gradient of each batch, one ``np.random.default_rng(seed).permutation`` per
epoch), then the server takes the example-weighted mean of the clients' models (numpy, or
Flower's ``aggregate``). It reads the CSV with pandas and encodes it as
:func:`privcity.data.load_csv` does (the same hashed test split, training-mean/std
standardisation, rows grouped by device in file order), so both sides train on the same bits.

Run as a script, it is one child process of the benchmark (its peak RSS is then the variant's
own): ``python bench/_workload.py {plain,flower,read_csv,load_csv} CSV ...``; it prints one JSON
line of timings and results.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

N_FEATURES, N_CLASSES, SIDE = 784, 10, 28
TEST_FRACTION = 0.2  # load_csv's default test split (hashed by row)
_S_CSV_SPLIT = 60  # load_csv's stream of that hash (privcity.data.csvload)


# --- the data --------------------------------------------------------------------------------

@dataclass
class Workload:
    """Rows of the CSV in file order: ``pixels`` uint8 (N, 784), ``labels`` int64 (N,),
    ``device`` int64 (N,) (a test row's device is any client: load_csv drops it), ``test`` bool
    (N,), the rows load_csv's hashed split holds out."""

    pixels: np.ndarray
    labels: np.ndarray
    device: np.ndarray
    test: np.ndarray
    clients: int
    rows_per_client: int


def _blur(field: np.ndarray, width: float) -> np.ndarray:
    """Gaussian blur of (..., 28, 28) fields along both image axes (a separable kernel)."""
    r = np.arange(-6, 7)
    k = np.exp(-0.5 * (r / width) ** 2)
    k /= k.sum()
    out = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), -1, field)
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), -2, out)


def _prototypes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(class prototypes (10, 784), style directions (16, 784)), float32, strokes in the
    central 20 x 20 pixels as in MNIST."""
    centre = np.zeros((SIDE, SIDE), np.float32)
    centre[4:24, 4:24] = 1.0
    fields = _blur(rng.standard_normal((N_CLASSES, SIDE, SIDE)), 1.5) * centre
    protos = np.zeros_like(fields)
    for c in range(N_CLASSES):
        lit = fields[c] > np.quantile(fields[c][centre > 0], 0.8)
        protos[c] = _blur(lit.astype(np.float64), 0.7)
    protos /= protos.max(axis=(1, 2), keepdims=True)
    style = _blur(rng.standard_normal((16, SIDE, SIDE)), 2.0) * centre
    style /= np.linalg.norm(style.reshape(16, -1), axis=1)[:, None, None]
    return (protos.reshape(N_CLASSES, -1).astype(np.float32),
            style.reshape(16, -1).astype(np.float32))


def images(labels: np.ndarray, seed: int, chunk: int = 8192) -> np.ndarray:
    """uint8 (len(labels), 784) MNIST-shaped images of the given classes, a function of seed."""
    rng = np.random.default_rng([seed, 0x4D4E495354])  # "MNIST"
    protos, style = _prototypes(rng)
    out = np.empty((labels.shape[0], N_FEATURES), np.uint8)
    for a in range(0, labels.shape[0], chunk):
        y = labels[a:a + chunk]
        n = y.shape[0]
        x = protos[y] * rng.uniform(0.6, 1.0, (n, 1)).astype(np.float32)
        x += (rng.standard_normal((n, 16), dtype=np.float32) * np.float32(5.0)) @ style
        x += rng.standard_normal((n, N_FEATURES), dtype=np.float32) * np.float32(0.3)
        x -= np.float32(0.2)
        np.clip(x, 0.0, 1.0, out=x)
        out[a:a + n] = np.rint(x * 255.0).astype(np.uint8)
    return out


def held_out_rows(n_rows: int, seed: int) -> np.ndarray:
    """load_csv's held-out rows among the first n_rows of a file whose every row has a target:
    row i is a test row when a hash of (seed, i) falls below the test fraction."""
    from privcity.data import _hash as H  # the split's own hash, so the shards are of train rows
    return H.uniform(H.entity_keys(seed, _S_CSV_SPLIT, np.arange(n_rows)), 0) < TEST_FRACTION


def make_workload(*, clients: int = 1000, rows_per_client: int = 60, seed: int = 0) -> Workload:
    """clients x rows_per_client training rows in non-IID shards (2 a client, of
    rows_per_client / 2 rows of a label-sorted order, dealt at random), plus the test rows
    load_csv holds out of the same file: about a quarter more rows (TEST_FRACTION 0.2)."""
    if rows_per_client % 2:
        raise ValueError(f"rows_per_client must be even (2 shards a client), got {rows_per_client}")
    n_train = clients * rows_per_client
    rng = np.random.default_rng([seed, 0x5348415244])  # "SHARD"
    # Enough rows that exactly n_train of them fall in the training split.
    n = int(n_train / (1 - TEST_FRACTION) * 1.02) + 64
    test = held_out_rows(n, seed)
    n = int(np.flatnonzero(~test)[n_train - 1]) + 1
    test = test[:n]
    labels = rng.integers(0, N_CLASSES, n)
    train_idx = np.flatnonzero(~test)
    device = rng.integers(0, clients, n)
    # McMahan's shards: training rows sorted by label, 2 * clients shards, 2 to each client.
    by_label = train_idx[np.argsort(labels[train_idx], kind="stable")]
    shard_owner = rng.permutation(np.repeat(np.arange(clients), 2))
    device[by_label] = np.repeat(shard_owner, rows_per_client // 2)
    return Workload(images(labels, seed), labels, device, test, clients, rows_per_client)


def write_csv(w: Workload, path: str, chunk: int = 4096) -> int:
    """Writes ``device,label,px0..px783`` with integer cells (vectorised: digits and separators
    laid out in a byte array, leading zeros masked off); returns the file's size in bytes."""
    header = "device,label," + ",".join(f"px{j}" for j in range(N_FEATURES)) + "\n"
    size = 0
    with open(path, "wb") as f:
        f.write(header.encode())
        size += len(header)
        for a in range(0, w.labels.shape[0], chunk):
            cells = np.concatenate([w.device[a:a + chunk, None], w.labels[a:a + chunk, None],
                                    w.pixels[a:a + chunk].astype(np.int64)], axis=1)
            data = _int_rows(cells)
            f.write(data)
            size += len(data)
    return size


def _int_rows(cells: np.ndarray, digits: int = 5) -> bytes:
    """CSV text of non-negative ints (rows x columns, each < 10**digits)."""
    n, c = cells.shape
    if cells.min() < 0 or cells.max() >= 10**digits:
        raise ValueError(f"cells must be in [0, {10**digits})")
    buf = np.empty((n, c, digits + 1), np.uint8)
    keep = np.ones((n, c, digits + 1), bool)
    rest = cells.copy()
    for k in range(digits - 1, -1, -1):  # least significant digit last in the cell
        buf[:, :, k] = 48 + rest % 10
        rest //= 10
    for k in range(digits - 1):  # a digit is kept once the value reaches its place
        keep[:, :, k] = cells >= 10 ** (digits - 1 - k)
    buf[:, :, digits] = ord(",")
    buf[:, -1, digits] = ord("\n")
    return buf[keep].tobytes()


# --- the plain loop ----------------------------------------------------------------------------

@dataclass
class Clients:
    """Training rows grouped by device (X float32 with a last column of ones, y int64,
    device d owns rows offsets[d]:offsets[d+1]) and the test set (float32, no ones column)."""

    X: np.ndarray
    y: np.ndarray
    offsets: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def read_plain(path: str, seed: int = 0) -> Clients:
    """The CSV through pandas, encoded as load_csv encodes it (see the module docstring):
    every column but device and label a standardised numeric feature."""
    import pandas as pd
    frame = pd.read_csv(path)
    device = frame.pop("device").to_numpy(np.int64)
    labels = frame.pop("label").to_numpy(np.int64)
    test = held_out_rows(len(labels), seed)
    raw = frame.to_numpy(np.float64)
    del frame
    train = np.flatnonzero(~test)
    order = train[np.argsort(device[train], kind="stable")]
    X = np.empty((order.size, raw.shape[1] + 1), np.float32)
    X_test = np.empty((int(test.sum()), raw.shape[1]), np.float32)
    for j in range(raw.shape[1]):  # column by column, as load_csv's Encoder (bit for bit)
        col = raw[:, j]
        tr = np.ascontiguousarray(col[train])
        m, s = float(tr.mean()), float(tr.std())
        s = s if s > 1e-12 * max(1.0, abs(m)) else 1.0
        X[:, j] = (col[order] - m) * (1.0 / s)
        X_test[:, j] = (col[test] - m) * (1.0 / s)
    X[:, -1] = 1.0
    _, counts = np.unique(device[order], return_counts=True)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    _, classes = np.unique(labels, return_inverse=True)  # load_csv's class codes
    return Clients(X, classes[order].astype(np.int64), offsets, X_test,
                   classes[test].astype(np.int64))


def client_update(W: np.ndarray, X: np.ndarray, y: np.ndarray, *, epochs: int, batch: int,
                  lr: float, seed: int) -> np.ndarray:
    """One client's local SGD from the global W (785 x 10, float32); returns its new W."""
    W = W.copy()
    rng = np.random.default_rng(seed)
    lr32, n = np.float32(lr), y.shape[0]
    for _ in range(epochs):
        order = rng.permutation(n)
        for j in range(0, n, batch):
            idx = order[j:j + batch]
            xb, yb = X[idx], y[idx]
            z = xb @ W
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            z[np.arange(idx.size), yb] -= np.float32(1.0)
            z /= np.float32(idx.size)
            W -= lr32 * (xb.T @ z)
    return W


def numpy_mean(models: list[np.ndarray], counts: list[int]) -> np.ndarray:
    """FedAvg's example-weighted mean of the clients' models."""
    return np.average(np.stack(models), axis=0, weights=np.asarray(counts, np.float64)) \
        .astype(np.float32)


def flower_mean(models: list[np.ndarray], counts: list[int]) -> np.ndarray:
    """The same mean through Flower's FedAvg aggregate (its NDArrays: one array per layer)."""
    from flwr.server.strategy.aggregate import aggregate
    return aggregate([([m], int(k)) for m, k in zip(models, counts)])[0].astype(np.float32)


def schedule(seed: int, rounds: int, clients: int,
             sample_rate: float) -> list[tuple[np.ndarray, list[int]]]:
    """Per round, (sampled clients, their training seeds): privcity's seeded Poisson sampling
    and per-device seeds (functions of seed, round and device only), so both sides train the
    same clients from the same shuffles."""
    from privcity.fl.rounds import sampled_devices, training_seeds
    out = []
    for r in range(rounds):
        ids = sampled_devices(seed, r, np.arange(clients), sample_rate=sample_rate)
        out.append((ids, training_seeds(seed, r, ids)))
    return out


def fedavg_plain(data: Clients, plan: list[tuple[np.ndarray, list[int]]], *, epochs: int,
                 batch: int, lr: float, mean=numpy_mean) -> tuple[np.ndarray, list[float]]:
    """FedAvg from zeros over the plan's rounds; (final W (785, 10), seconds of each round)."""
    W = np.zeros((N_FEATURES + 1, N_CLASSES), np.float32)
    times = []
    for ids, seeds in plan:
        t0 = time.perf_counter()
        models, counts = [], []
        for d, s in zip(ids.tolist(), seeds):
            a, b = data.offsets[d], data.offsets[d + 1]
            if b > a:
                models.append(client_update(W, data.X[a:b], data.y[a:b], epochs=epochs,
                                            batch=batch, lr=lr, seed=s))
                counts.append(int(b - a))
        if models:
            W = mean(models, counts)
        times.append(time.perf_counter() - t0)
    return W, times


def accuracy(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy of W (785, 10) on rows without the ones column."""
    return float(np.mean(np.argmax(X @ W[:-1] + W[-1], axis=1) == y))


# --- child processes ---------------------------------------------------------------------------

def _main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["plain", "flower", "read_csv", "load_csv"])
    p.add_argument("csv")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--sample-rate", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default="", help="write the final W here (.npy)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    if a.what == "read_csv":
        import pandas as pd
        frame = pd.read_csv(a.csv)
        return {"seconds": time.perf_counter() - t0, "shape": list(frame.shape)}
    if a.what == "load_csv":
        from privcity.data import load_csv
        train, (x_test, _) = load_csv(a.csv, target="label", device_column="device", seed=a.seed)
        return {"seconds": time.perf_counter() - t0, "train_rows": int(train.X.shape[0]),
                "test_rows": int(x_test.shape[0]), "devices": int(train.n_devices)}
    data = read_plain(a.csv, a.seed)
    t1 = time.perf_counter()
    plan = schedule(a.seed, a.rounds, len(data.offsets) - 1, a.sample_rate)
    mean = numpy_mean
    if a.what == "flower":
        import flwr.server.strategy.aggregate  # noqa: F401  (imported before the clock runs)
        mean = flower_mean
    t2 = time.perf_counter()
    W, times = fedavg_plain(data, plan, epochs=a.epochs, batch=a.batch, lr=a.lr, mean=mean)
    t3 = time.perf_counter()
    acc = accuracy(W, data.X_test, data.y_test)
    if a.save:
        np.save(a.save, W)
    return {"read_seconds": t1 - t0, "rounds_seconds": t3 - t2, "round_seconds": times,
            "eval_seconds": time.perf_counter() - t3, "accuracy": acc,
            "device_rounds": int(sum(len(ids) for ids, _ in plan)),
            "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    print(json.dumps(_main(sys.argv[1:])))
