"""Top-k retrieval over a very large catalogue: our exact top-k vs TFRS' BruteForce (and ScaNN if present).

    python benchmarks/topk_scale.py --items 1000000 --dim 64 --batch 1 32

Random item vectors ``[N + 1, d]`` and queries ``[B, d]`` (normal, fixed seed). For each batch size
it times, each inside one ``tf.function`` after a warm-up call (median of ``--repeats`` calls):

* ``exact_top_k``: what the export's recommendation signatures run: the scores ``(M · qᵀ)ᵀ`` on
  the table as stored, then :func:`sasrec_tf.ranking.kernel.exact_top_k` (the top blocks by
  maximum, then ``top_k`` over their columns);
* ``exact_top_k Mt``: the same with the scores from a transposed copy ``[d, N + 1]`` (the layout the
  export used before it kept a single copy of the table; ``--no-transposed`` skips it);
* ``tf.math.top_k``: the same scores, plain ``top_k`` (the reference: exact, ties to the lower id);
* ``BruteForce``: ``tfrs.layers.factorized_top_k.BruteForce(k)`` indexed with the same matrix (it
  loads in stock TensorFlow Serving: a matmul and ``top_k``);
* ``scann (pybind)``, with ``--scann`` (instead of BruteForce; needs ``scann``): ScaNN's own searcher (tree +
  asymmetric hashing + reordering), outside TensorFlow: its TF ops do not load in TensorFlow 2.21
  and stock ``tensorflow_model_server`` does not link them (see ``docs/distributed.md``).

Recall@k is the share of the reference's k ids each method returns (1 for an exact method, up to
ties). Peak RSS of this process is printed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from sasrec_tf.testing.bench import peak_rss_mib, set_tensorflow_environment

set_tensorflow_environment()


def _median_ms(function, queries, repeats: int) -> tuple[float, object]:
    result = function(queries)  # traces and warms up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(queries)
        _ = [part.numpy() for part in result]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def _recall(ids, reference) -> float:
    found = [len(set(row) & set(ref)) / len(ref) for row, ref in zip(ids.tolist(), reference.tolist())]
    return sum(found) / len(found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64, help="d")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--scann", action="store_true",
                        help="measure ScaNN's pybind searcher (needs the scann package) instead of TFRS' BruteForce")
    parser.add_argument("--no-transposed", action="store_true", help="skip the transposed copy (memory)")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    # With scann 1.4.2 installed under TF 2.21 `import tensorflow_recommenders` fails (its factorized_top_k
    # imports scann's TF ops, which do not load), so --scann measures ScaNN without TFRS' BruteForce.
    scann = _import_scann() if args.scann else None
    if scann is None:
        import tensorflow_recommenders as tfrs

    from sasrec_tf.ranking import kernel

    rng = np.random.default_rng(0)
    items = rng.standard_normal((args.items + 1, args.dim), dtype=np.float32)
    matrix = tf.constant(items)
    print(f"{args.items:,} items, d {args.dim}, k {args.k}: item matrix {items.nbytes / 2**20:.0f} MiB; "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'} intra-op threads")

    exact = tf.function(lambda q: kernel.exact_top_k(tf.transpose(tf.matmul(matrix, q, transpose_b=True)), args.k))
    transposed = None if args.no_transposed else tf.transpose(matrix)
    exact_t = tf.function(lambda q: kernel.exact_top_k(tf.matmul(q, transposed), args.k))
    plain = tf.function(lambda q: tf.math.top_k(kernel.score_all(q, matrix), k=args.k))
    if scann is None:
        brute = tfrs.layers.factorized_top_k.BruteForce(k=args.k)
        brute.index(matrix, tf.range(args.items + 1, dtype=tf.int32))
        brute_call = tf.function(lambda q: brute(q, k=args.k))
    searcher = None if scann is None else _scann_searcher(scann, items, args.k)

    print(f"{'method':<16} {'batch':>5} {'median ms':>10} {'recall@' + str(args.k):>10}")
    for batch in args.batch:
        queries = tf.constant(rng.standard_normal((batch, args.dim), dtype=np.float32))
        plain_ms, (_, reference) = _median_ms(plain, queries, args.repeats)
        reference = reference.numpy()
        rows = [("tf.math.top_k", plain_ms, 1.0)]
        exact_ms, (_, ids) = _median_ms(exact, queries, args.repeats)
        rows.append(("exact_top_k", exact_ms, _recall(ids.numpy(), reference)))
        if transposed is not None:
            exact_t_ms, (_, ids) = _median_ms(exact_t, queries, args.repeats)
            rows.append(("exact_top_k Mt", exact_t_ms, _recall(ids.numpy(), reference)))
        if scann is None:
            brute_ms, (_, ids) = _median_ms(brute_call, queries, args.repeats)
            rows.append(("BruteForce", brute_ms, _recall(ids.numpy(), reference)))
        if searcher is not None:
            call = lambda q: (tf.constant(searcher.search_batched(q.numpy())[0]),)  # noqa: E731
            scann_ms, (ids,) = _median_ms(call, queries, args.repeats)
            rows.append(("scann (pybind)", scann_ms, _recall(ids.numpy(), reference)))
        for name, ms, recall in rows:
            print(f"{name:<16} {batch:>5} {ms:>10.1f} {recall:>10.3f}", flush=True)
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    return 0


def _import_scann():
    """ScaNN's pybind module (its searcher outside TensorFlow), or None when ``scann`` is not installed."""
    try:
        from scann.scann_ops.py import scann_ops_pybind
    except ModuleNotFoundError as err:
        print(f"scann: not measured ({err})")
        return None
    except Exception as err:  # scann 1.4.2's __init__ loads its TF ops, which fail under TF 2.21 (not caught there)
        print(f"scann: its TF ops do not load ({type(err).__name__}: ...{str(err)[-70:]}); using its pybind searcher")
        from scann.scann_ops.py import scann_ops_pybind  # the second import finds the pybind module loaded
    return scann_ops_pybind


def _scann_searcher(scann_ops_pybind, items, k: int):
    """A ScaNN searcher over ``items`` (dot product): a tree, asymmetric hashing, exact reordering."""
    started = time.perf_counter()
    leaves = max(1, int(len(items) ** 0.5))
    searcher = (scann_ops_pybind.builder(items, k, "dot_product")
                .tree(num_leaves=leaves, num_leaves_to_search=max(1, leaves // 10), training_sample_size=250_000)
                .score_ah(2, anisotropic_quantization_threshold=0.2).reorder(100).build())
    print(f"scann: {leaves} leaves, {max(1, leaves // 10)} searched, reorder 100; built in "
          f"{time.perf_counter() - started:.0f} s")
    return searcher


if __name__ == "__main__":
    sys.exit(main())
