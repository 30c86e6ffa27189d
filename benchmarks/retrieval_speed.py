"""Speed, recall and memory of exemplar retrieval on this machine.

Prints:
1. for each index kind (flat, ivf, ivfpq) over N random unit vectors of 384 dimensions: build
   time, single-query latency p50/p99 (k=10, one query at a time, 1 thread), the same with a
   group of 1,000 ids excluded, and recall@10 against the exact flat search;
2. recall@10 of ivf against flat on real MiniLM embeddings of the bundled text sets (the
   worst case for IVF is random vectors, which have no clusters; real embeddings do);
3. RSS of a fresh process that loads the three default exemplar libraries: after the imports,
   after loading (what the libraries cost) and at its peak.

    python benchmarks/retrieval_speed.py               # 100k vectors
    python benchmarks/retrieval_speed.py --n 20000     # quicker
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

DIM, K, QUERIES = 384, 10, 300


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def latency(index, queries: np.ndarray, exclude: np.ndarray) -> tuple[float, float, np.ndarray]:
    """p50 and p99 in ms of one-at-a-time searches, and the ids found."""
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        _, ids = index.search(q[None], K, exclude=exclude)
        times.append((time.perf_counter() - started) * 1000)
        found.append(ids[0])
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), np.array(found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def kinds(n: int) -> None:
    from affectgraph.retrieval.index import IndexOptions, VectorIndex

    x, queries = unit(n, DIM, 0), unit(QUERIES, DIM, 1)
    excluded = np.arange(0, n, n // 1000, dtype=np.int64)[:1000]
    truth = None
    print(f"{n} random unit vectors, {DIM} dims, k={K}, {QUERIES} single queries, 1 thread")
    for kind in ("flat", "ivf", "ivfpq"):
        started = time.perf_counter()
        index = VectorIndex.build(x, options=IndexOptions(kind=kind))
        build = time.perf_counter() - started
        p50, p99, found = latency(index, queries, np.array([], dtype=np.int64))
        x50, x99, _ = latency(index, queries, excluded)
        truth = found if truth is None else truth
        extra = f" nlist {index.nlist} nprobe {index.nprobe}" if index.nlist else ""
        print(f"  {kind:6s} build {build:6.2f} s  query p50 {p50:6.2f} ms p99 {p99:6.2f} ms  "
              f"excluding 1000 ids p50 {x50:6.2f} ms p99 {x99:6.2f} ms  "
              f"recall@10 {recall(found, truth):.3f}{extra}")
        if kind == "ivf":
            for nprobe in (8, 32, 128, 256):
                index.nprobe = nprobe
                p50, _, found = latency(index, queries, np.array([], dtype=np.int64))
                print(f"         nprobe {nprobe:4d}: p50 {p50:6.2f} ms recall@10 "
                      f"{recall(found, truth):.3f}")


def real_text() -> None:
    import torch

    from affectgraph.datasets import load_dataset
    from affectgraph.features import extract, vectoriser
    from affectgraph.retrieval.index import IndexOptions, VectorIndex

    torch.set_num_threads(1)
    items = [i for name in ("goemotions", "meld", "emorynlp") for i in load_dataset(name)]
    features = extract(items, vectoriser("text"))
    x = features.vectors[features.ok]
    queries, base = x[:QUERIES], x[QUERIES:]
    flat = VectorIndex.build(base, options=IndexOptions(kind="flat"))
    ivf = VectorIndex.build(base, options=IndexOptions(kind="ivf"))
    _, _, truth = latency(flat, queries, np.array([], dtype=np.int64))
    print(f"{len(base)} real MiniLM text embeddings (GoEmotions + MELD + EmoryNLP), k={K}")
    for nprobe in (ivf.nprobe, ivf.nlist // 16, ivf.nlist // 4):
        ivf.nprobe = nprobe
        p50, _, found = latency(ivf, queries, np.array([], dtype=np.int64))
        print(f"  ivf nlist {ivf.nlist} nprobe {nprobe:3d}: p50 {p50:5.2f} ms "
              f"recall@10 {recall(found, truth):.3f}")


MEMORY_PROBE = """
import json, time
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
start = status('VmRSS')
import faiss
from affectgraph.retrieval.defaults import default_library
imported = status('VmRSS')
started = time.perf_counter()
libraries = [default_library(m) for m in ('voice', 'text', 'face')]
seconds = time.perf_counter() - started
print(json.dumps({'start': start, 'imported': imported, 'loaded': status('VmRSS'),
                  'peak': status('VmHWM'), 'seconds': seconds,
                  'sizes': {l.manifest.modality: len(l) for l in libraries}}))
"""


def memory() -> None:
    """RSS of a fresh process (VmHWM, not ru_maxrss: that survives exec from this one)."""
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], check=True, capture_output=True,
                         text=True).stdout
    m = json.loads(out.strip().splitlines()[-1])
    print(f"default libraries {m['sizes']}: loaded in {m['seconds']:.2f} s; RSS after imports "
          f"{m['imported']:.0f} MB, after loading {m['loaded']:.0f} MB (libraries "
          f"+{m['loaded'] - m['imported']:.0f} MB), peak {m['peak']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--skip-real", action="store_true", help="skip the real text embeddings")
    args = parser.parse_args()
    kinds(args.n)
    if not args.skip_real:
        real_text()
    memory()


if __name__ == "__main__":
    main()
