"""Which training samples plan selection measures on: class-balanced
subsets of labelled samples (deploy, the contribution analysis, TraDy's
ranking and the benchmarks draw them the same way)."""

import numpy as np


def balanced_subset(y, count, rng):
    """Up to `count` row indices of labels `y`, as even across classes as
    possible (round robin over the classes, a random order within each),
    shuffled; every row when count is None or too large."""
    y = np.asarray(y)
    if count is None or count >= len(y):
        return rng.permutation(len(y))
    pools = [list(rng.permutation(np.flatnonzero(y == c))) for c in np.unique(y)]
    chosen = []
    while len(chosen) < count:
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    return rng.permutation(np.array(chosen, dtype=np.int64))
