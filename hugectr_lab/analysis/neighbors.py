"""Array math of the analysis engine, written once against ``xp`` (NumPy: the reference; CuPy: the
same code on the GPU): PCA by SVD and nearest neighbours by one GEMM plus a top-k selection."""

from __future__ import annotations

METRICS = ("cosine", "euclidean", "dot")


def pca(xp, x, n_components=2):
    """Principal components of the rows of ``x`` (N, D) by SVD of the centred matrix.

    Returns ``(projected (N, k), components (k, D), explained_variance_ratio (k,))`` in float64 (the
    SVD is computed in float64 on both backends), k = ``min(n_components, N, D)``. Each component's
    sign makes its largest-magnitude coefficient positive (as scikit-learn), so the result is unique.
    """
    x = xp.asarray(x, dtype=xp.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"pca needs a (N, D) matrix with N >= 2 rows, got shape {tuple(x.shape)}")
    k = int(min(n_components, *x.shape))
    if k < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components!r}")
    centred = x - x.mean(axis=0)
    _, s, vt = xp.linalg.svd(centred, full_matrices=False)   # s (min(N, D),), vt (min(N, D), D)
    components = vt[:k]
    pivot = xp.argmax(xp.abs(components), axis=1)
    signs = xp.sign(components[xp.arange(k), pivot])
    components = components * signs[:, None]
    variance = s ** 2
    total = variance.sum()
    ratio = variance[:k] / total if float(total) > 0 else xp.zeros(k)
    return centred @ components.T, components, ratio


def nearest_neighbors(xp, table, queries, k=10, metric="cosine", exclude=None):
    """The ``k`` rows of ``table`` (N, E) closest to each row of ``queries`` (Q, E).

    ``metric``: "cosine" (similarity, higher is closer), "dot" (inner product) or "euclidean"
    (distance, lower is closer). ``exclude``: None or (Q,) row indices of ``table`` not to return for
    each query (the query's own row). Returns ``(indices (Q, k) int64, scores (Q, k) float64)`` sorted
    closest first; ties go to the lower row index. One (Q, N) GEMM in float64, then a partial selection.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    table = xp.asarray(table, dtype=xp.float64)
    queries = xp.asarray(queries, dtype=xp.float64)
    if table.ndim != 2 or queries.ndim != 2 or table.shape[1] != queries.shape[1]:
        raise ValueError(f"table (N, E) and queries (Q, E) must share E, got {tuple(table.shape)} and "
                         f"{tuple(queries.shape)}")
    n = table.shape[0]
    k = int(min(k, n - (exclude is not None)))
    if k < 1:
        raise ValueError(f"k must be >= 1 and the table must hold more rows than excluded, got k={k}, N={n}")
    if metric == "cosine":
        scale = lambda a: a / xp.maximum(xp.linalg.norm(a, axis=1, keepdims=True), 1e-30)  # noqa: E731
        closeness = scale(queries) @ scale(table).T        # (Q, N)
    elif metric == "dot":
        closeness = queries @ table.T
    else:   # - squared distance, so that higher is closer for every metric
        closeness = 2 * (queries @ table.T) - (queries ** 2).sum(1)[:, None] - (table ** 2).sum(1)[None, :]
    if exclude is not None:
        exclude = xp.asarray(exclude, dtype=xp.int64).reshape(-1)
        closeness[xp.arange(len(exclude)), exclude] = -xp.inf
    kth = -xp.partition(-closeness, k - 1, axis=1)[:, k - 1:k]    # (Q, 1) the k-th highest closeness
    above, tied = closeness > kth, closeness == kth
    # of the rows tied with the k-th, the lowest indices fill the k places (the same rows on both backends)
    take_tied = tied & (xp.cumsum(tied, axis=1) <= k - above.sum(axis=1, keepdims=True))
    index = xp.nonzero(above | take_tied)[1].reshape(len(queries), k)   # ascending within each row
    score = xp.take_along_axis(closeness, index, axis=1)
    order = xp.argsort(-score, axis=1, kind="stable")
    index = xp.take_along_axis(index, order, axis=1)
    score = xp.take_along_axis(score, order, axis=1)
    if metric == "euclidean":
        score = xp.sqrt(xp.maximum(-score, 0))
    return index.astype(xp.int64), score
