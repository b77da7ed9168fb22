"""The optimisation inversion's success against the record count k (the table in
privcity.attacks.optimize's docstring): ``python bench/inversion_optimize_table.py [devices]``.

Synthetic city (air_quality: softmax, 3 classes; traffic: linear regression), devices of k
records, a start trained on other devices, lr 0.1; (a) one full-batch step, (b) the simulator's
5 local epochs of batches of 16. Labels are guessed by the attack; the 0.05 share counts a
record only with its label, the 0.2 share its features only.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from privcity.attacks import optimize_report
from privcity.data import make_city
from privcity.models import LinearRegression, SoftmaxRegression, train_centralized, train_many

LR = 0.1
KS = (1, 2, 4, 8, 16)


def setting(task: str, k: int, devices: int):
    data = make_city(task, n_devices=devices + 40, samples_per_device=k, seed=3)
    F = data.X.shape[1]
    model = SoftmaxRegression(n_features=F, n_classes=data.n_classes) \
        if data.task_type == "classification" else LinearRegression(n_features=F)
    rest = slice(int(data.offsets[devices]), None)
    start = train_centralized(model, model.init_params(0), data.X[rest], data.y[rest], epochs=3,
                              batch_size=8, lr=0.05, seed=0)
    return data, model, start


def cell(task: str, k: int, devices: int, epochs: int, batch: int):
    data, model, start = setting(task, k, devices)
    ups = train_many(model, start, data.X, data.y, data.offsets, np.arange(devices),
                     epochs=epochs, batch_size=batch, lr=LR, seeds=list(range(devices)))
    n = int(data.offsets[devices])
    owners = np.repeat(np.arange(devices), k)
    labels = data.y[:n].astype(np.int64) if model.task_type == "classification" else None
    steps = epochs * math.ceil(k / batch)
    t0 = time.perf_counter()
    rep = optimize_report(model, data.X[:n], ups, owners=owners, labels=labels, tol=0.05,
                          params_before=start, lr=LR, steps=steps)
    per_device = (time.perf_counter() - t0) / devices
    # share at 0.05 counts the label too (classification); at 0.2 the features only.
    return rep.share, float(np.mean(rep.errors <= 0.2)), per_device


def main() -> None:
    devices = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    for task in ("air_quality", "traffic"):
        for k in KS:
            row = []
            for epochs, batch in ((1, k), (5, 16)):
                s05, s2, sec = cell(task, k, devices, epochs, batch)
                row.append(f"{s05:.2f}/{s2:.2f} ({sec * 1e3:.0f} ms)")
            print(f"{task:12s} k={k:2d}  one step {row[0]:22s}  5 epochs b16 {row[1]}", flush=True)


if __name__ == "__main__":
    main()
