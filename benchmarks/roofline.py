"""Roofline of SASRec on this CPU: FLOPs per step from the configuration, achieved FLOP/s, matmul FLOP/s.

    python benchmarks/roofline.py                               # the paper's configuration
    python benchmarks/roofline.py --set fused_attention=false   # MultiHeadAttention's own call
    python benchmarks/roofline.py --config pipelines/recommended.json --set num_heads=2
    python benchmarks/roofline.py --alternate fused_attention   # both values, rounds alternating
    python benchmarks/roofline.py --width 11                    # a bucketed batch's width

Three workloads, each timed in steady state (median of ``--steps`` calls after ``--warmup``):

* **training step**: ``model.train_step`` (forward, loss, gradients, optimizer update) on one
  fixed ``[batch_size, max_len]`` batch of the training pipeline (unbucketed, so every step has
  the same shapes; ``--width W`` keeps its last ``W`` columns), repeated;
* **validation pass**: ``--eval-batch`` histories -> last-position queries -> scores against the
  whole catalogue (``query_embeddings @ item_embeddings^T``, the full-ranking product);
* **serving, batch 1**: one history -> scores over N items, for each ``--serving-items`` N.

FLOPs are counted analytically (:func:`forward_flops`, 2 per multiply-add, matmul-type work
only: projections, attention scores and weighted sum, FFN, logits; LayerNorm, softmax, dropout,
bias adds, activations, gathers and the optimizer's element-wise update are excluded), a
training step being 3x its forward pass (the backward pass 2x). TensorFlow's own count
(``tf.compat.v1.profiler`` ``float_ops`` on the traced graph, by op type) is printed beside it
for the training step: its matmul-type ops, and every op it has a count for.

The "matmul" column is the same process's dense-matmul rate at the workload's shapes, each
shape timed alone in a ``tf.function`` (``[B*T, d] x [d, d]``, ``[B*T, d] x [d, ffn]``, the
weight-gradient ``[d, B*T] x [B*T, d]``, the ``[B, T, T]`` score and weighted-sum batched
matmuls; ``[B, d] x [d, N]`` for the scoring products), combined as the time every counted
FLOP would take at its shape's rate. ``ratio`` = achieved / that rate: the share of the
matmul roofline the workload reaches. The default log is generated with the shape of the
paper's Amazon Beauty data (22,363 users, 12,101 items, 8.9 interactions per user).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from sasrec_tf.testing.bench import (BEAUTY_ITEMS, BEAUTY_MEAN_LENGTH, BEAUTY_USERS, benchmark_log, cpu_model,
                                     set_tensorflow_environment)

set_tensorflow_environment()

SAMPLED_LOSSES = ("bce", "bpr", "gbce", "sampled_softmax")  # logits over 1 + num_negatives items


def forward_flops(*, batch: int, width: int, hidden_units: int, num_blocks: int, ffn_units: int | None = None,
                  scored_items: int = 2, last_only: bool = False) -> dict[str, int]:
    """Matmul FLOPs (2 per multiply-add) of one encoder forward pass and its scoring, by part.

    Args:
      batch: ``B``, sequences in the batch.
      width: ``T``, positions per sequence (every position is computed, padded ones too).
      hidden_units: ``d``.
      num_blocks: ``L``.
      ffn_units: the FFN's inner width; ``None`` means ``d``.
      scored_items: items scored per scored position: ``1 + num_negatives`` for sampled losses
        (every position), the catalogue size ``N + 1`` for full ranking.
      last_only: the last block computes the last position's query only, and only the last
        position is scored (validation and serving: ``SASRec.query_embeddings``).

    Returns:
      ``{"qkv projections", "output projection", "attention scores", "attention weighted sum",
      "ffn", "logits"}`` -> FLOPs.

    Raises:
      ValueError: a size below 1 (``num_blocks`` below 0).
    """
    for name, value in (("batch", batch), ("width", width), ("hidden_units", hidden_units),
                        ("scored_items", scored_items)):
        if value < 1:
            raise ValueError(f"forward_flops: {name} must be >= 1, got {value!r}")
    if num_blocks < 0:
        raise ValueError(f"forward_flops: num_blocks must be >= 0, got {num_blocks!r}")
    d, f, rows = hidden_units, ffn_units or hidden_units, batch * width
    parts = dict.fromkeys(("qkv projections", "output projection", "attention scores",
                           "attention weighted sum", "ffn"), 0)
    for block in range(num_blocks):
        queries = batch if last_only and block == num_blocks - 1 else rows  # query rows
        parts["qkv projections"] += 2 * queries * d * d + 2 * 2 * rows * d * d
        parts["output projection"] += 2 * queries * d * d
        parts["attention scores"] += 2 * queries * width * d
        parts["attention weighted sum"] += 2 * queries * width * d
        parts["ffn"] += 2 * queries * d * f + 2 * queries * f * d
    parts["logits"] = 2 * (batch if last_only else rows) * d * scored_items
    return parts


def training_step_flops(config, width: int | None = None) -> dict[str, int]:
    """:func:`forward_flops` x 3 (forward + backward) of a training step of ``config``
    (a :class:`sasrec_tf.SASRecConfig`) at width ``width`` (default ``max_len``).

    Raises:
      ValueError: a loss whose logits are not over ``1 + num_negatives`` sampled items.
    """
    if config.loss not in SAMPLED_LOSSES:
        raise ValueError(f"training_step_flops: loss={config.loss!r} is not modelled; one of {SAMPLED_LOSSES}")
    forward = forward_flops(batch=config.batch_size, width=width or config.max_len, hidden_units=config.hidden_units,
                            num_blocks=config.num_blocks, ffn_units=config.ffn_units,
                            scored_items=1 + config.num_negatives)
    return {name: 3 * value for name, value in forward.items()}


def median_seconds(call, steps: int, warmup: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (every thread of the process) of ``call()``
    over ``steps`` calls after ``warmup`` untimed ones. On a loaded machine CPU time is the
    steadier of the two: it leaves out the time the process waited for a core."""
    for _ in range(warmup):
        call()
    wall, cpu = [], []
    for _ in range(steps):
        started, cpu_started = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return statistics.median(wall), statistics.median(cpu)


def matmul_rate(tf, a_shape, b_shape, *, transpose_a=False, transpose_b=False, steps=30,
                repeats=8) -> tuple[float, float]:
    """GFLOP per wall second and per CPU second of ``tf.matmul`` at these shapes: ``repeats``
    independent products per call of a ``tf.function`` (their results returned, so none is
    pruned), medians over ``steps`` calls."""
    a = [tf.random.normal(a_shape, seed=i) for i in range(repeats)]
    b = tf.random.normal(b_shape, seed=99)

    @tf.function
    def products():
        return [tf.matmul(x, b, transpose_a=transpose_a, transpose_b=transpose_b) for x in a]

    out = products()[0]
    inner = a_shape[-2] if transpose_a else a_shape[-1]
    flops = 2 * repeats * int(tf.size(out)) * inner
    wall, cpu = median_seconds(lambda: products(), steps, warmup=3)
    return flops / wall / 1e9, flops / max(cpu, 1e-9) / 1e9


def tensorflow_flops(tf, function, *args) -> dict[str, int]:
    """TensorFlow's ``float_ops`` of ``function``'s traced graph, by op type."""
    graph = function.get_concrete_function(*args).graph
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    profile = tf.compat.v1.profiler.profile(graph, cmd="op", options=options)
    return {child.name: int(child.total_float_ops) for child in profile.children}


MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "Conv2D",
              "Conv2DBackpropInput", "Conv2DBackpropFilter")


def graph_matmul_flops(graph) -> dict[str, int]:
    """FLOPs of the matmul-type ops of a traced graph from their static shapes, by op type: the
    profiler registers a count for ``MatMul`` but none for ``BatchMatMulV2`` or ``Einsum``.
    ``2 x`` the product of every index's size (einsum), ``2 x M x N x K x batch`` (matmuls)."""
    import numpy as np

    totals: dict[str, int] = {}
    for op in graph.get_operations():
        if op.type not in MATMUL_OPS[:5]:
            continue
        shapes = [tuple(tensor.shape) for tensor in op.inputs]
        if any(None in shape for shape in shapes):
            continue  # dynamic shape: not countable
        if op.type == "Einsum":
            inputs, _ = op.get_attr("equation").decode().split("->")
            sizes: dict[str, int] = {}
            for letters, shape in zip(inputs.split(","), shapes):
                if "..." in letters:  # the ellipsis stands for the leading dimensions
                    head, tail = letters.split("...")
                    width = len(shape) - len(head) - len(tail)
                    letters = head + "".join(chr(0x100 + i) for i in range(width)) + tail
                sizes.update(zip(letters, shape))
            flops = 2 * int(np.prod(list(sizes.values()), dtype=np.int64))
        else:
            (a, b), out = shapes, tuple(op.outputs[0].shape)
            transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            flops = 2 * int(np.prod(out, dtype=np.int64)) * (a[-2] if transposed else a[-1])
        totals[op.type] = totals.get(op.type, 0) + flops
    return totals


def build(config, num_items: int):
    from sasrec_tf import training

    model = training.build_model(config, num_items)
    model.build()
    return model


def measure(tf, config, data, args) -> dict:
    """One configuration built and traced; its ``"round"`` times the training step, the validation
    pass and batch-1 serving once."""
    import numpy as np

    from sasrec_tf.data import training_dataset

    model = build(config, data.num_items)
    batch = next(iter(training_dataset(data.sequences, data.num_items, config.max_len, config.batch_size,
                                       num_negatives=config.num_negatives, seed=config.seed,
                                       bucket_by_length=False)))
    width = args.width or config.max_len  # the last columns: what a bucketed batch of that width holds
    batch = {key: value[:, -width:] if key in ("item_ids", "positives", "negatives") else value
             for key, value in batch.items()}
    step = tf.function(model.train_step)
    step_seconds = lambda: median_seconds(lambda: step(batch)["loss"].numpy(), args.steps, args.warmup)  # noqa: E731
    histories = tf.constant(np.stack([s[-config.max_len:] for s in _padded(data.sequences, config.max_len,
                                                                             args.eval_batch)]))

    def scorer(scoring_model):
        return tf.function(lambda ids: tf.matmul(scoring_model.query_embeddings(ids), scoring_model.item_embeddings(),
                                                 transpose_b=True))

    validate = scorer(model)
    serving = {}
    for items in args.serving_items:
        serving_model = model if items == data.num_items else build(config, items)
        serving[items] = scorer(serving_model)
    def one_round() -> dict[str, float]:  # steps, validation, serving: drift spreads over all
        return {"train": step_seconds(),
                "valid": median_seconds(lambda: validate(histories).numpy(), max(args.steps // 5, 5), 2),
                **{f"serve {n}": median_seconds(lambda f=f: f(histories[:1]).numpy(), args.steps, 5)
                   for n, f in serving.items()}}

    return {"model": model, "batch": batch, "step": step, "round": one_round, "rounds": []}


def _padded(sequences, max_len: int, count: int):
    """The last ``max_len`` items of ``count`` users' histories, left-padded with 0."""
    import numpy as np

    out = []
    for sequence in list(sequences)[:count]:
        tail = np.asarray(sequence[-max_len:], dtype=np.int32)
        out.append(np.concatenate([np.zeros(max_len - len(tail), np.int32), tail]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="pipeline file whose model section is the configuration "
                        "(default: the paper's)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="SASRecConfig override")
    parser.add_argument("--data", help="interaction log (default: generated, Beauty-shaped)")
    parser.add_argument("--format", default="s3rec")
    parser.add_argument("--width", type=int, help="the training batch's width (default max_len; a bucketed "
                        "pipeline's batches are as wide as their longest window: 10.7 on average here)")
    parser.add_argument("--eval-batch", type=int, default=1024, help="histories per validation batch (the protocols')")
    parser.add_argument("--serving-items", type=int, nargs="+", default=[12101, 25000], help="catalogue sizes N")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50, help="timed calls per measurement (median)")
    parser.add_argument("--rounds", type=int, default=1, help="measurement rounds (minimum of the medians)")
    parser.add_argument("--alternate", metavar="FIELD", help="a boolean SASRecConfig field: measure it false and "
                        "true in turn, --rounds rounds each")
    parser.add_argument("--no-tf-count", dest="tf_count", action="store_false", help="skip TensorFlow's FLOP count")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from sasrec_tf.experiment import load_pipeline

    pipeline = load_pipeline(args.config)
    pipeline.apply_overrides(args.set)
    base = pipeline.build("model")
    data = benchmark_log(args.data, args.format, num_users=BEAUTY_USERS, num_items=BEAUTY_ITEMS,
                         mean_length=BEAUTY_MEAN_LENGTH, seed=0)
    variants = ({f"{args.alternate}={value}": base.replace(**{args.alternate: value}) for value in (False, True)}
                if args.alternate else {"": base})
    results = {label: measure(tf, config, data, args) for label, config in variants.items()}
    B, T, d, f = base.batch_size, args.width or base.max_len, base.hidden_units, base.ffn_units or base.hidden_units
    rows = B * T  # the training step's shapes; validation and serving run at max_len
    shapes = {  # (a, b, transpose_a, transpose_b) of each product the workloads are made of
        "proj": ((rows, d), (d, d), False, False), "ffn": ((rows, d), (d, f), False, False),
        "dW": ((rows, d), (rows, d), True, False), "scores": ((B, T, d), (B, T, d), False, True),
        "weighted": ((B, T, T), (B, T, d), False, False),
        "valid": ((args.eval_batch, d), (data.num_items + 1, d), False, True),
        **{f"serve {n}": ((1, d), (n + 1, d), False, True) for n in args.serving_items},
    }
    rates: dict[str, list] = {key: [] for key in shapes}
    for _ in range(args.rounds):  # variants and matmuls alternate round by round: a slow spell hits all
        for result in results.values():
            result["rounds"].append(result["round"]())
        for key, (a, b, ta, tb) in shapes.items():
            rates[key].append(matmul_rate(tf, a, b, transpose_a=ta, transpose_b=tb,
                                          steps=100 if key.startswith("serve") else 30))
    # Best of the rounds: the fastest the machine did each thing (wall, CPU), as the step times'.
    rate = {key: (max(r[0] for r in values), max(r[1] for r in values)) for key, values in rates.items()}

    train = training_step_flops(base, width=T)
    train_total = sum(train.values())
    # Each part at its shapes' rate: forward and input gradients at the forward shape, weight
    # gradients (a third of the projections' and FFN's work) at the dW shape; logits at "proj".
    route = {"qkv projections": ("proj", "dW"), "output projection": ("proj", "dW"), "ffn": ("ffn", "dW"),
             "attention scores": ("scores", "scores"), "attention weighted sum": ("weighted", "weighted"),
             "logits": ("proj", "proj")}
    train_rate = tuple(
        train_total / sum(2 * flops / 3 / rate[route[part][0]][i] + flops / 3 / rate[route[part][1]][i]
                          for part, flops in train.items())
        for i in (0, 1))
    encoder = dict(width=base.max_len, hidden_units=d, num_blocks=base.num_blocks, ffn_units=base.ffn_units,
                   last_only=True)
    valid = forward_flops(batch=args.eval_batch, scored_items=data.num_items + 1, **encoder)
    serve = {n: forward_flops(batch=1, scored_items=n + 1, **encoder) for n in args.serving_items}

    print(f"CPU: {cpu_model()}; TensorFlow {tf.__version__}; log: {data.num_users} users, {data.num_items} items")
    print(f"config: d={d}, blocks={base.num_blocks}, heads={base.num_heads}, max_len={base.max_len}, "
          f"training batch {B} x {T}, "
          f"ffn={f}, loss={base.loss}, negatives={base.num_negatives}"
          + (f"; overrides: {' '.join(args.set)}" if args.set else ""))
    print("training step FLOPs (analytic, forward x 3): "
          + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in train.items()) + f"; total {train_total / 1e9:.3f} G")
    for label, result in results.items():
        step, batch = result["step"], result["batch"]
        traced = graph_matmul_flops(step.get_concrete_function(batch).graph)
        print(f"{label or 'config'}: traced train_step's matmul-type ops from their shapes "
              f"{sum(traced.values()) / 1e9:.3f} G ({', '.join(f'{k} {v / 1e6:.1f}M' for k, v in traced.items())}); "
              f"analytic / traced = {train_total / sum(traced.values()):.3f}")
        if args.tf_count and label == next(iter(results)):  # its counts accumulate over calls in a process
            counts = tensorflow_flops(tf, step, batch)
            print(f"{label or 'config'}: tf.compat.v1.profiler float_ops: "
                  + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:6])
                  + f"; all {sum(counts.values()) / 1e9:.3f} G (no count registered for Einsum or BatchMatMulV2)")
    print("matmul GFLOP/s at the step's shapes, per wall s / per CPU s: "
          + ", ".join(f"{k} {w:.1f}/{c:.1f}" for k, (w, c) in rate.items()))
    print(f"\n{'variant':<24}{'workload':<22}{'GFLOP':>8}{'ms':>9}{'cpu ms':>9}{'GFLOP/s':>9}"
          f"{'matmul':>8}{'ratio':>7}{'cpu ratio':>10}")
    for label, result in results.items():
        best = {key: tuple(min(r[key][i] for r in result["rounds"]) for i in (0, 1)) for key in result["rounds"][0]}
        lines = [("training step", train_total, best["train"], train_rate),
                 (f"validation ({args.eval_batch} users)", sum(valid.values()), best["valid"], rate["valid"])]
        lines += [(f"serving 1 x {n}", sum(serve[n].values()), best[f"serve {n}"], rate[f"serve {n}"])
                  for n in args.serving_items]
        for workload, flops, (wall, cpu), (roof, cpu_roof) in lines:
            achieved, cpu_ratio = flops / wall / 1e9, flops / max(cpu, 1e-9) / 1e9 / cpu_roof
            print(f"{label or 'config':<24}{workload:<22}{flops / 1e9:>8.4f}{wall * 1e3:>9.2f}{cpu * 1e3:>9.2f}"
                  f"{achieved:>9.1f}{roof:>8.1f}{achieved / roof:>7.2f}{cpu_ratio:>10.2f}")
    print(f"\n{args.rounds} round(s), minimum of the medians of {args.steps} calls; GFLOP/s per wall second; "
          "'matmul': the same run's dense-matmul GFLOP/s at the workload's shapes (the training step: its parts' "
          "shapes combined; validation and serving: the score product's shape); ratio = GFLOP/s / matmul, "
          "cpu ratio the same per CPU second.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
