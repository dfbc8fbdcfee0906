"""Publishing an export version: version numbers, atomic staging, the publish gate, warmup requests.

``export_saved_model(model_dir, BASE, NAME)`` writes ``BASE/NAME/<version>/`` atomically (the
version is built in a hidden temporary directory next to it, then renamed), so a server polling
``BASE/NAME`` never sees a half-written version. The layout and the signatures are documented in
:mod:`sasrec_tf.export`; the graph is :mod:`sasrec_tf.export.module`.

Importing this module does not import TensorFlow (``sasrec-tf info`` lists versions with
:func:`list_versions`); exporting and writing warmup requests do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sasrec_tf import card as model_card
from sasrec_tf.export.contract import (
    ASSETS_EXTRA_DIR,
    DEFAULT_K,
    EXPORT_INFO_FILE,
    MAX_VERSION,
    SIGNATURE_REGISTRY,
    UNKNOWN_SCORE,
    WARMUP_FILE,
    parse_version,
)
from sasrec_tf.ranking.rules import check_cold_score_offset

__all__ = ["STALE_EXPORT_SECONDS", "export_saved_model", "list_versions", "next_version", "remove_stale_staging",
           "write_warmup_requests"]

_TMP_PREFIX = ".tmp-export-"
# A staging directory in which nothing has changed for this long belongs to a killed export.
STALE_EXPORT_SECONDS = 3600


# ------------------------------------------------------------------------------------ versions
def list_versions(model_root: str | os.PathLike[str]) -> list[int]:
    """Version numbers under ``BASE/NAME`` (numeric subdirectories), ascending."""
    root = Path(model_root)
    if not root.is_dir():
        return []
    found = ((parse_version(p.name), p) for p in root.iterdir())
    return sorted(version for version, p in found if version is not None and p.is_dir())


def next_version(model_root: str | os.PathLike[str]) -> int:
    """One more than the largest version under ``BASE/NAME`` (1 for a new model)."""
    versions = list_versions(model_root)
    return versions[-1] + 1 if versions else 1


# ------------------------------------------------------------------------------------ export
def export_saved_model(
    model: Any,
    export_base: str | os.PathLike[str],
    name: str,
    *,
    version: int | None = None,
    k: int = DEFAULT_K,
    warmup: bool = True,
    gate_on: str | None = None,
    gate_tolerance: float = 0.0,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    card_from: str | os.PathLike[str] | None = None,
    notes: dict[str, Any] | None = None,
    cold_score_offset: float | None = None,
) -> Path:
    """Export a trained model to ``export_base/name/<version>/`` and return that path.

    The model's card (:mod:`sasrec_tf.card`; built from ``config.json`` and ``metrics.json`` for
    a directory trained without one) goes to ``assets.extra/card.json`` with an ``export``
    section. With ``gate_on`` (the publish gate, e.g. ``"ndcg@10"``; see
    :func:`sasrec_tf.card.gate_value`) the model's validation value is compared with the card of
    the latest version already under ``export_base/name``: a value lower by more than
    ``gate_tolerance`` raises :class:`~sasrec_tf.card.GateRefused` before anything is written,
    unless ``force``. No earlier version, or one without a card, passes. The verdict is recorded
    in the card (``export.gate``).

    Args:
        model: a model directory (as written by ``sasrec-tf train``) or a
            :class:`sasrec_tf.artifacts.TrainedModel`.
        export_base: the directory TF Serving watches (``--model_base_path`` is
            ``export_base/name``).
        name: the model name clients use.
        version: the version number; default: one more than the largest existing version.
            An existing version is never overwritten.
        k: the number of items ``serving_default`` returns.
        warmup: write ``assets.extra/tf_serving_warmup_requests``.
        gate_on: the validation metric of the publish gate (``ndcg@10``, ``sampled.hr@10``);
            None publishes without comparing.
        gate_tolerance: how much lower than the latest version's value the metric may be.
        force: publish even when the gate refuses (the card records it).
        progress: called as ``progress(what, done, total)`` after each step: the model loaded,
            the SavedModel traced and saved, the warmup requests written (with ``warmup``), the
            version published.
        card_from: with a ``TrainedModel``, the model directory whose card it carries (e.g. the
            model it was grown from by ``sasrec-tf add-items``).
        notes: more entries for ``sasrec_export.json`` (e.g. ``cold_items``).
        cold_score_offset: serve every cold item (a model with item features: an item without a
            trained id row) this much lower than its feature vector scores, in every signature (the
            exposure knob for new items; ``item_embeddings`` returns it as ``score_bias``); None: the
            model's ``feature_cold_score_offset`` (0 unless trained with one).

    Raises:
        FileExistsError: the version exists already.
        GateRefused: the gate refused the model (a ``ValueError``); nothing was written.
        ValueError: a bad name, version, k or gate, or a model with a user embedding.
    """
    import tensorflow as tf

    from sasrec_tf.artifacts import TrainedModel, load_trained
    from sasrec_tf.export.module import SASRecServingModule
    from sasrec_tf.export.tables import FusedTable, defer_item_tables, write_deferred_tables

    if not name or name in (".", "..") or "/" in name or os.sep in name or name.startswith("."):
        raise ValueError(f"invalid model name {name!r}: use a plain directory name")
    root = Path(export_base) / name
    if version is None:
        version = next_version(root)
    if (isinstance(version, bool) or not isinstance(version, (int, np.integer))
          or not 1 <= version <= MAX_VERSION):
        raise ValueError(f"version must be a positive integer of at most {MAX_VERSION} (an int64, as TF Serving "
                         f"reads it), got {version!r}")
    version = int(version)
    if cold_score_offset is not None:
        check_cold_score_offset(cold_score_offset)  # before the model loads
    final = root / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists: versions are immutable; pick another --version")
    # The card and the gate before the model loads: a refusal is quick and writes nothing.
    source = (None if isinstance(model, TrainedModel) else str(Path(model).absolute())) if card_from is None \
        else str(Path(card_from).absolute())
    card = (model_card.model_card(source) if source is not None
            else model_card.build_card(model.model.config, versions={}))
    gate = _gate(card, root, gate_on, gate_tolerance, force) if gate_on is not None else None
    steps = 4 if warmup else 3
    done = 0

    def report(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(what, done, steps)

    # A model directory is read with its item tables left at zeros; the SavedModel's are written
    # from its weights file, copied out into `scratch` until then (sasrec_tf.export.tables).
    with contextlib.ExitStack() as scratch:
        deferred = []
        if isinstance(model, TrainedModel):
            trained = model
        else:
            weights_dir = scratch.enter_context(tempfile.TemporaryDirectory(prefix="sasrec-weights-"))
            with tf.variable_creator_scope(_zeros_until_loaded):
                trained = load_trained(model, weights_dir=weights_dir,
                                       prepare=lambda built: defer_item_tables(built, deferred))
        report("model loaded")
        served_offset = float(trained.model.config.feature_cold_score_offset if cold_score_offset is None
                              else cold_score_offset)
        trained.model.item_score_bias(served_offset)  # a bad offset fails here, before anything is written
        if len(trained.vocab) != trained.model.num_items:
            raise ValueError(f"the vocabulary has {len(trained.vocab)} items but the model {trained.model.num_items}")

        root.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(root)
        staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))  # hidden, non-numeric: never served
        try:
            with tempfile.TemporaryDirectory() as vocab_dir:
                vocab_file = Path(vocab_dir) / "vocab.txt"
                trained.vocab.save(vocab_file)
                module = SASRecServingModule(trained.model, vocab_file, trained.item_counts, k=k,
                                             compute_item_matrix=not deferred, cold_score_offset=cold_score_offset)
                tf.saved_model.save(module, str(staging), signatures=module.signatures())
            if deferred and trained.model.uses_item_features:  # its fused table, from the deferred id table
                served = (trained.model.output_item_embedding or trained.model.item_embedding).embeddings
                (id_table,) = [table for table in deferred if table.variable is served]
                deferred.append(FusedTable(variable=module._item_matrix, source=id_table, model=trained.model))
            slices = write_deferred_tables(staging, module, deferred) if deferred else {}
            written = f"; item tables written in {'/'.join(map(str, slices.values()))} slices" if slices else ""
            report(f"SavedModel saved ({len(SIGNATURE_REGISTRY)} signatures traced{written})")
            extra = staging / ASSETS_EXTRA_DIR
            extra.mkdir()
            if warmup:
                write_warmup_requests(extra / WARMUP_FILE, name, trained.vocab.ids[: module.max_len])
                report("warmup requests written")
            info = {
                "format": "sasrec-tf export 1",
                "model_name": name,
                "version": version,
                "k": module.k,
                "max_len": module.max_len,
                "num_items": module.num_items,
                "embedding_dim": int(module._item_matrix.shape[-1]),
                "popularity": "training item counts" if trained.item_counts is not None else "dense-id order",
                "unknown_score": UNKNOWN_SCORE,
                "signatures": list(SIGNATURE_REGISTRY),
                "config": dataclasses.replace(trained.model.config,
                                              feature_cold_score_offset=served_offset).to_dict(),
                "cold_score_offset": served_offset,
                **(notes or {}),
            }
            (extra / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            card = model_card.export_card(card, model_name=name, version=version, source=source, gate=gate)
            (extra / model_card.CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            staging.chmod(0o755)  # mkdtemp creates 0700; the serving user may differ from the exporter
            os.rename(staging, final)  # atomic on one filesystem; fails if `final` appeared meanwhile
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        report(f"version {version} published")
        return final


def _zeros_until_loaded(next_creator, **kwargs):
    """A variable creator for loading a model directory: float weights start as zeros, not from
    their initializer, since the file's values replace them. Keras' random initializers leave two
    more table-sized buffers resident (measured: a uniform-initialised 750k x 64 ``Embedding``
    holds 3.2 x its table, a zero-initialised one 1.0 x), which set the export's peak memory."""
    import tensorflow as tf

    shape, dtype = kwargs.get("shape"), kwargs.get("dtype")
    if callable(kwargs.get("initial_value")) and shape is not None and dtype is not None:
        shape, dtype = tf.TensorShape(shape), tf.as_dtype(dtype)
        if shape.is_fully_defined() and dtype.is_floating:
            kwargs["initial_value"] = lambda: tf.zeros(shape, dtype)
    return next_creator(**kwargs)


def _gate(card: dict[str, Any], root: Path, gate_on: str, tolerance: float, force: bool) -> dict[str, Any]:
    """The publish gate's verdict for ``card`` against the latest version under ``root``.

    Raises:
        GateRefused: the model is worse by more than ``tolerance`` and not ``force``.
    """
    published = list_versions(root)
    latest = published[-1] if published else None
    old_card = (model_card.read_card(root / str(latest))
                if latest is not None and model_card.find_card(root / str(latest)) else None)
    decision = model_card.compare(card, old_card, gate_on, tolerance=tolerance, old_version=latest)
    if not decision.passed and not force:
        raise model_card.GateRefused(decision.message)
    return {**dataclasses.asdict(decision), "forced": not decision.passed}


def remove_stale_staging(model_root: str | os.PathLike[str], max_age: float = STALE_EXPORT_SECONDS) -> list[Path]:
    """Remove ``.tmp-export-*`` directories of killed exports under ``model_root``; returns them.

    A directory counts as abandoned when nothing inside it changed for ``max_age`` seconds, so a
    concurrent export that is still writing is left alone. Servers never load these (hidden,
    non-numeric names); this only reclaims their disk space, at the next export of the model.
    """
    removed = []
    for staging in Path(model_root).glob(_TMP_PREFIX + "*"):
        try:
            newest = max([staging.stat().st_mtime] + [
                (Path(folder) / name).stat().st_mtime
                for folder, dirs, files in os.walk(staging) for name in dirs + files])
        except OSError:  # removed meanwhile, or unreadable: not ours to judge
            continue
        if time.time() - newest >= max_age:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def write_warmup_requests(path: str | os.PathLike[str], model_name: str, sample_ids: list[str]) -> None:
    """Write PredictionLog records (one Predict per signature, batch 1 and 2) for TF Serving's warmup.

    Each history starts with ``""`` (see ``serving/README.md``: TF Serving's batching pads with a
    request's first element), one row uses real items and one is empty. Each signature's inputs
    come from its ``warmup_inputs`` in ``SIGNATURE_REGISTRY``.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from sasrec_tf.data.vocab import PAD_TOKEN

    items = [PAD_TOKEN, *sample_ids]
    histories = [np.array([items], dtype=object),
                 np.array([items, [PAD_TOKEN] * len(items)], dtype=object)]
    with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for history in histories:
            for signature, entry in SIGNATURE_REGISTRY.items():
                tensors = entry.warmup_inputs(history)
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
                )
                for key, value in tensors.items():
                    request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=tf.string))
                log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
