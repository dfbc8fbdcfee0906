"""What a training run reads, checked before anything is built: the log (can it train and be
evaluated?), TFRecord shards (verified against their manifest, and named when one breaks while
training), and item features (aligned to the vocabulary -- a log's, or the one a shard manifest
records -- and to a warm-start parent's attributes)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sasrec_tf import parameter_server
from sasrec_tf.config import OBJECTIVE_SPECS, OptionError, SASRecConfig
from sasrec_tf.run_options import TrainOptions

__all__ = ["align_features", "check_evaluable", "check_shard_vocabulary", "check_trainable", "name_the_bad_shard",
           "read_shards", "sharded_input"]

logger = logging.getLogger(__name__)


def read_shards(directory: str, config: SASRecConfig, options: TrainOptions):
    """``(shards, data)`` for training from a ``sasrec-tf shard`` directory: training streams
    from the shards, and ``data`` holds the users to evaluate in memory (all of them, or a seeded
    sample of ``options.max_eval_users``, on which the reported metrics then are).

    The shards are checked against their manifest first (:meth:`ShardedSequences.verify`).

    Raises:
      ValueError: a user-embedding model with a sample of users to evaluate.
      sasrec_tf.data.errors.DataError: a shard is missing, truncated or corrupted (named).
    """
    from sasrec_tf.data.tfrecord import ShardedSequences

    shards = ShardedSequences(directory)
    shards.verify()
    users = None
    if options.max_eval_users is not None and options.max_eval_users < shards.num_users:
        if config.use_user_embedding:
            raise ValueError("use_user_embedding with sharded input needs every user evaluated: "
                             "drop max_eval_users (--max-eval-users)")
        users = np.random.default_rng(config.seed).choice(shards.num_users, size=options.max_eval_users,
                                                          replace=False)
        logger.info("evaluating a sample of %d of %d users", options.max_eval_users, shards.num_users)
    else:
        logger.warning("reading every user's sequence for evaluation; set max_eval_users to bound the memory")
    return shards, shards.read_sequences(users)


def check_trainable(data, config: SASRecConfig) -> None:
    """Raise ``ValueError`` before anything is built if the configuration cannot fit this log: more
    sampled negatives per position than the catalogue has items besides the target (each would be
    a repeat; a million of them grow the batch past any memory)."""
    if OBJECTIVE_SPECS[config.loss].samples_negatives and config.num_negatives >= data.num_items:
        raise OptionError("num_negatives", f"SASRecConfig.num_negatives must be below the catalogue's "
                          f"{data.num_items} items (at most {data.num_items - 1} for this log), got "
                          f"{config.num_negatives}")


def check_evaluable(data, split, options: TrainOptions) -> None:
    """Raise ``ValueError`` before training if the evaluation after it cannot run: no user with
    the 3 interactions leave-one-out needs, or a user with fewer unseen items than the sampled
    protocol's ``eval_negatives`` (a small catalogue). The message names the fix."""
    lengths = data.lengths()
    if not len(split.test_users):
        longest = int(lengths.max()) if len(lengths) else 0
        raise ValueError(
            f"no user has the 3 interactions leave-one-out evaluation needs (one each to train on, validate "
            f"and test); the longest history here has {longest}: the log needs more interactions per user")
    users = np.asarray(split.test_users)
    stride = data.num_items + 1
    rows = np.repeat(np.arange(len(users)), lengths[users])
    items = np.concatenate([data.sequences[u] for u in users])
    seen = np.bincount(np.unique(rows * stride + items) // stride, minlength=len(users))
    unseen = data.num_items - seen  # what the sampled protocol draws the test's negatives from
    worst = int(np.argmin(unseen))
    if unseen[worst] < options.eval_negatives:
        fix = (f"pass --eval-negatives {unseen[worst]} (or fewer)" if unseen[worst] else
               "the sampled protocol cannot rank for a user who has seen every item; remove such users")
        raise ValueError(
            f"the sampled protocol ranks each test item against {options.eval_negatives} items the user never "
            f"interacted with, but user {data.user_ids[users[worst]]!r} interacted with {seen[worst]} of the "
            f"{data.num_items} items, which leaves {unseen[worst]}: {fix}")


def align_features(item_features, data, config: SASRecConfig, parent, shards=None):
    """The item features by dense id (None without), checked against the configuration, a
    warm-start parent (whose attribute ids they keep) and TFRecord ``shards``, whose manifest's
    vocabulary maps their dense ids to the raw ids the features name (:func:`check_shard_vocabulary`).

    Raises:
      OptionError: features without a fusion, or a fusion without features.
      ValueError: shards whose vocabulary cannot align the features.
    """
    if item_features is None:
        if config.feature_fusion != "none":
            raise OptionError("feature_fusion", f"SASRecConfig.feature_fusion={config.feature_fusion!r} needs item "
                              "features (--item-features, or item_features in the --config file)")
        if config.feature_cold_tower:
            raise OptionError("feature_cold_tower", "SASRecConfig.feature_cold_tower needs item features "
                              "(--item-features, or item_features in the --config file)")
        return None
    if config.feature_fusion == "none":
        raise OptionError("feature_fusion", "item features need SASRecConfig.feature_fusion 'sum', 'concat' or "
                          "'gate' (it is 'none')")
    # A parent with features fixes the attribute ids; one without them starts a fresh attribute
    # vocabulary (warmstart.warm_start copies its id rows, the feature weights start fresh).
    names = parent.attribute_names if parent is not None else None
    if shards is not None:
        check_shard_vocabulary(shards, data)
    aligned = item_features.aligned(data.vocab, attribute_names=names, grow=True)
    if shards is not None and aligned.items_without_features == data.num_items:
        raise ValueError(f"{item_features.source}: no item of the shards' vocabulary ({shards.directory}) has "
                         "features: the features must name the raw item ids the shards were written from")
    return aligned


def check_shard_vocabulary(shards, data) -> None:
    """Raise ``ValueError`` unless the shards' manifest names a vocabulary of exactly its
    ``num_items`` items (the raw id of each dense id the records hold), as ``data`` (read from the
    shards) does: item features are aligned by raw id through it."""
    from pathlib import Path

    name = shards.manifest.get("vocab")
    where = Path(shards.directory) / (name or "vocab.txt")
    if not name:
        raise ValueError(f"{shards.directory}: the manifest records no vocabulary, so item features cannot be "
                         "aligned to the shards' item ids; write the shards with `sasrec-tf shard`")
    if len(shards.vocab) != shards.num_items or len(data.vocab) != shards.num_items:
        raise ValueError(f"{where}: {len(shards.vocab)} items, but the manifest records {shards.num_items}: item "
                         "features cannot be aligned to the shards' item ids; write the shards again "
                         "(`sasrec-tf shard --overwrite`)")


def sharded_input(shards, config: SASRecConfig, strategy) -> dict[str, Any]:
    """``fit``'s ``dataset`` and ``steps_per_epoch`` for training from shards (none without)."""
    if shards is None:
        return {}
    settings = dict(leave_one_out=True, num_negatives=config.num_negatives, windows=config.training_windows,
                    exclude_history=config.exclude_history_negatives, bucket_by_length=config.bucket_by_length)
    dataset = shards.dataset_fn(config.max_len, config.batch_size, seed=config.seed, **settings)
    if parameter_server.uses_coordinator(strategy):  # every worker reads every shard, in its own order
        next_seed = parameter_server.worker_seeds(strategy, config.seed)

        def per_worker(input_context):
            return shards.dataset_fn(config.max_len, config.batch_size, seed=next_seed(), **settings)(None)
        dataset = per_worker
    return {
        "dataset": dataset,
        "steps_per_epoch": shards.steps_per_epoch(config.max_len, config.batch_size, config.training_windows,
                                                  leave_one_out=True),
    }


def name_the_bad_shard(shards, err: Exception) -> None:
    """A shard damaged after the check before training surfaces as TensorFlow's DataLossError,
    which names no file: check the shards again and raise the DataError that names it."""
    import tensorflow as tf

    from sasrec_tf.data.errors import DataError

    if shards is None or not isinstance(err, tf.errors.DataLossError):
        return
    shards.verify()
    raise DataError(f"a shard became unreadable while training ({err.message.split(' [')[0].split('}} ')[-1]}); "
                    "write the shards again (`sasrec-tf shard --overwrite`)", path=shards.directory) from None
