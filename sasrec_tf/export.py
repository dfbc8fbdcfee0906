"""Export a trained SASRec as a versioned SavedModel for TensorFlow Serving and any TF program.

``export_saved_model(model_dir, BASE, NAME)`` writes ``BASE/NAME/<version>/`` atomically (the
version is built in a hidden temporary directory next to it, then renamed), so a server polling
``BASE/NAME`` never sees a half-written version::

    saved_model.pb, variables/        the graph and the weights (no Python needed to run them)
    assets/vocab.txt                  item vocabulary (line i = raw id of dense item i + 1), read
                                      by the lookup tables inside the graph
    assets.extra/tf_serving_warmup_requests   PredictionLog records TF Serving replays at load
    assets.extra/sasrec_export.json   what was exported (k, max_len, catalogue size, signatures)
    assets.extra/card.json            the model card (sasrec_tf.card): data, config, metrics,
                                      parent, versions, and the publish gate's verdict

Signatures (batch-major, so TF Serving's batching can merge requests; ids are strings), in the
order of ``SIGNATURE_REGISTRY``, which declares them (see "Adding a signature" below):

``serving_default``
    ``history`` ``DT_STRING [batch, None]``: each user's raw item ids, oldest first, padded with
    ``""`` anywhere → ``item_ids`` ``DT_STRING [batch, k]`` and ``scores`` ``DT_FLOAT [batch, k]``,
    best first: the top-k next items, never an item of the request's history (all of it, also
    items older than the most recent ``max_len``), never padding.
``recommend_including_history``
    ``history`` → ``item_ids`` and ``scores`` as ``serving_default``: the same top-k without
    excluding the history's items (repeat-consumption domains).
``score``
    ``history`` and ``candidates`` ``DT_STRING [batch, m]`` → ``scores`` ``DT_FLOAT [batch, m]``:
    each candidate's score for its row's history.
``embed``
    ``history`` → ``embedding`` ``DT_FLOAT [batch, d]``: the sequence representation, whose dot
    product with an item embedding is the item's score (for an external nearest-neighbour index).
``item_embeddings``
    ``item_ids`` ``DT_STRING [batch]`` → ``embeddings`` ``DT_FLOAT [batch, d]`` and ``known``
    ``DT_BOOL [batch]``. Items are looked up by id rather than returned all at once: that works
    under Predict (every signature input is required, responses stay within gRPC's message size,
    requests batch), and a client pages through the vocabulary it already has. Programs that load
    the SavedModel get the whole matrix with ``loaded.all_item_embeddings()``.

Documented behaviour, identical in every signature:

* **Unknown ids and padding.** History ids that are not in the vocabulary, and ``""``, are
  ignored (dropped), not an error. What remains is truncated to the most recent ``max_len`` items
  and left-padded, exactly as in training.
* **Empty histories** (no known item): the score of an item is its popularity — its number of
  interactions in the training split (``item_counts.npy`` of the model directory). Without
  counts, dense-id order is used (score ``N + 1 - dense id``): ``ItemVocabulary.from_interactions``
  numbers items by descending interaction count, so this is popularity in the whole log. So
  ``serving_default`` returns the most popular items, ``score`` their popularity, and ``embed``
  a zero vector (the encoder's output at padding).
* **Unknown candidates** (and ``""``) in ``score`` get ``UNKNOWN_SCORE``, the lowest float32
  (``-3.4028235e38``): it sorts last like ``-inf`` but stays finite, because TF Serving's REST API
  writes JSON, which cannot carry ``-inf``.
* **Fewer eligible items than k** (a history covering almost the whole catalogue): the tail of
  ``item_ids`` is ``""`` with score ``UNKNOWN_SCORE``.

Models with a user embedding (``use_user_embedding=True``) are not exportable: their query
depends on a per-user vector learned for training users only, which a serving request for a new
user cannot supply.

Adding a signature: a ``tf.function`` method of :class:`SASRecServingModule` whose
``input_signature`` declares its batch-major inputs, one :class:`ServingSignature` entry in
``SIGNATURE_REGISTRY`` (its outputs, warmup inputs and a one-line description), its tests, and its
paragraph above. ``SIGNATURES``, ``SASRecServingModule.signatures()``, the warmup requests, the
``signatures`` list of ``sasrec_export.json`` and :func:`describe_signatures` (the CLI's help)
all follow the registry.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import types
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from sasrec_tf.data.vocab import PAD_TOKEN

__all__ = [
    "SERVING_DEFAULT", "RECOMMEND_INCLUDING_HISTORY", "SCORE", "EMBED", "ITEM_EMBEDDINGS", "SIGNATURES",
    "HISTORY", "CANDIDATES", "ITEM_IDS", "ServingSignature", "SIGNATURE_REGISTRY", "describe_signatures",
    "UNKNOWN_SCORE", "WARMUP_FILE", "EXPORT_INFO_FILE", "SASRecServingModule", "export_saved_model",
    "write_warmup_requests", "next_version", "list_versions", "exact_top_k",
]

SERVING_DEFAULT = "serving_default"
RECOMMEND_INCLUDING_HISTORY = "recommend_including_history"
SCORE = "score"
EMBED = "embed"
ITEM_EMBEDDINGS = "item_embeddings"
# Input names (clients build their requests with these).
HISTORY = "history"
CANDIDATES = "candidates"
ITEM_IDS = "item_ids"

UNKNOWN_SCORE = float(np.finfo(np.float32).min)
WARMUP_FILE = "tf_serving_warmup_requests"
EXPORT_INFO_FILE = "sasrec_export.json"
_TMP_PREFIX = ".tmp-export-"
# A staging directory in which nothing has changed for this long belongs to a killed export.
STALE_EXPORT_SECONDS = 3600

_HISTORY = tf.TensorSpec([None, None], tf.string, name=HISTORY)
_CANDIDATES = tf.TensorSpec([None, None], tf.string, name=CANDIDATES)
_ITEM_IDS = tf.TensorSpec([None], tf.string, name=ITEM_IDS)


class SASRecServingModule(tf.Module):
    """The serving graph around a trained SASRec: vocabulary lookups, packing, scoring, top-k.

    Only the model's variables are tracked (not the Keras object), so the SavedModel holds plain
    functions that run without ``sasrec_tf`` or Keras. ``vocab_file`` becomes a SavedModel asset.

    Args:
        model: a built, exportable :class:`~sasrec_tf.SASRec` (no user embedding).
        vocab_file: the model's ``vocab.txt`` (line ``i`` = raw id of dense item ``i + 1``).
        item_counts: ``[num_items + 1]`` training interactions per dense id, or None (then
            dense-id order stands for popularity; see the module docstring).
        k: the number of items the recommendation signatures return.
    """

    def __init__(self, model, vocab_file: str | os.PathLike[str], item_counts=None, k: int = 10):
        super().__init__(name="sasrec_serving")
        if model.uses_user_embedding:
            raise ValueError(
                "models with a user embedding cannot be exported for serving: the user vector exists "
                "only for training users; retrain with use_user_embedding=False"
            )
        num_items = model.num_items
        if not 1 <= int(k) <= num_items:
            raise ValueError(f"k must be in 1..{num_items} (the catalogue size), got {k}")
        self.k = int(k)
        self.max_len = int(model.max_len)
        self.num_items = int(num_items)
        # The encoder, traced once and called by every signature: ``[B, T]`` dense ids, left-padded
        # (T <= max_len) → the query ``[B, d]``. Exposed on the loaded object as ``encode_dense``.
        self.encode_dense = tf.function(
            model.query_embeddings, input_signature=[tf.TensorSpec([None, None], tf.int64, name="item_ids")]
        )
        self.model_variables = list(model.variables)
        self._item_matrix = model.item_embeddings()  # [N + 1, d], row 0 = padding (one of model_variables)

        if item_counts is None:
            popularity = np.concatenate([[0.0], np.arange(num_items, 0, -1, dtype=np.float64)])
        else:
            popularity = np.asarray(item_counts, dtype=np.float64)
            if popularity.shape != (num_items + 1,):
                raise ValueError(f"item_counts must have shape ({num_items + 1},), got {popularity.shape}")
        self.popularity = tf.Variable(popularity.astype(np.float32), trainable=False, name="popularity")
        # Scoring matrix [d + 1, N + 1]: the item matrix transposed (the fast layout for a
        # [B, d] x [d, N] product) with popularity as one more row. A query [q, 1{empty}] then
        # scores a history with q.M (the encoder outputs q = 0 for an empty one) and an empty
        # history with the popularity, in one matmul.
        self.scoring_matrix = tf.Variable(
            tf.concat([tf.transpose(self._item_matrix), self.popularity[tf.newaxis, :]], axis=0),
            trainable=False, name="scoring_matrix",
        )

        vocab_file = os.fspath(vocab_file)
        self.id_to_index = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=-1,
        )
        self.index_to_id = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                vocab_file, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value=PAD_TOKEN,
        )

    # ----------------------------------------------------------------------------- building blocks
    def _dense(self, raw_ids: tf.Tensor) -> tf.Tensor:
        """Raw ids → dense ids (int64, same shape); unknown ids and ``""`` → 0."""
        return self.id_to_index.lookup(raw_ids) + 1

    def _encode(self, history: tf.Tensor):
        """``history [B, L]`` → (dense ids ``[B, L]``, query ``[B, d]``, has-a-known-item ``[B]``).

        Known items are moved to the right end in their order (a stable sort on "is known"), which
        left-pads them; the batch is then cut to the most recent ``min(max known, max_len)``.
        """
        dense = self._dense(history)
        dense = tf.pad(dense, [[0, 0], [1, 0]])  # at least one column, whatever the request width
        known = tf.cast(dense > 0, tf.int32)
        order = tf.argsort(known, axis=1, stable=True)
        packed = tf.gather(dense, order, batch_dims=1)
        counts = tf.reduce_sum(known, axis=1)
        width = tf.clip_by_value(tf.reduce_max(tf.concat([counts, [1]], 0)), 1, self.max_len)
        packed = packed[:, tf.shape(packed)[1] - width:]
        return dense, self.encode_dense(packed), counts > 0

    def _all_scores(self, history: tf.Tensor, exclude_history: bool):
        dense, query, has_history = self._encode(history)
        empty = tf.cast(tf.logical_not(has_history), query.dtype)[:, tf.newaxis]
        scores = tf.matmul(tf.concat([query, empty], axis=1), self.scoring_matrix)  # [B, N + 1]
        # Mask the padding column (every row of `dense` has a 0) and, if asked, the history's items.
        masked = dense if exclude_history else tf.zeros_like(dense[:, :1])
        rows = tf.broadcast_to(tf.range(tf.shape(masked, out_type=tf.int64)[0])[:, tf.newaxis], tf.shape(masked))
        indices = tf.reshape(tf.stack([rows, masked], axis=-1), [-1, 2])
        updates = tf.fill(tf.shape(indices)[:1], tf.constant(UNKNOWN_SCORE, tf.float32))
        return tf.tensor_scatter_nd_update(scores, indices, updates)

    def _top_k(self, history: tf.Tensor, exclude_history: bool) -> dict[str, tf.Tensor]:
        scores, dense_ids = exact_top_k(self._all_scores(history, exclude_history), self.k)
        raw = self.index_to_id.lookup(tf.cast(dense_ids, tf.int64) - 1)
        raw = tf.where(scores > UNKNOWN_SCORE, raw, PAD_TOKEN)
        return {"item_ids": raw, "scores": scores}

    # ----------------------------------------------------------------------------- signatures
    # Each is exported under the name its SIGNATURE_REGISTRY entry gives (after this class).
    @tf.function(input_signature=[_HISTORY])
    def recommend(self, history):
        """Top-k items not in the history: ``{"item_ids": [B, k] string, "scores": [B, k]}``."""
        return self._top_k(history, exclude_history=True)

    @tf.function(input_signature=[_HISTORY])
    def recommend_including_history(self, history):
        """Top-k items, history items included: ``{"item_ids", "scores"}`` as :meth:`recommend`."""
        return self._top_k(history, exclude_history=False)

    @tf.function(input_signature=[_HISTORY, _CANDIDATES])
    def score(self, history, candidates):
        """``{"scores": [B, m]}`` of each row's candidates; unknown candidates get UNKNOWN_SCORE."""
        _, query, has_history = self._encode(history)
        dense = self._dense(candidates)
        model_scores = tf.einsum("bd,bmd->bm", query, tf.gather(self._item_matrix, dense))
        scores = tf.where(has_history[:, tf.newaxis], model_scores, tf.gather(self.popularity, dense))
        return {"scores": tf.where(dense > 0, scores, tf.constant(UNKNOWN_SCORE, tf.float32))}

    @tf.function(input_signature=[_HISTORY])
    def embed(self, history):
        """``{"embedding": [B, d]}``: the query whose dot product with an item vector is its score."""
        _, query, _ = self._encode(history)
        return {"embedding": query}

    @tf.function(input_signature=[_ITEM_IDS])
    def item_embeddings(self, item_ids):
        """``{"embeddings": [B, d], "known": [B] bool}``; unknown ids get zeros."""
        dense = self._dense(item_ids)
        known = dense > 0
        vectors = tf.gather(self._item_matrix, dense)
        vectors = tf.where(known[:, tf.newaxis], vectors, tf.zeros_like(vectors))
        return {"embeddings": vectors, "known": known}

    @tf.function(input_signature=[])
    def all_item_embeddings(self):
        """``{"item_ids": [N] string, "embeddings": [N, d]}``: the whole catalogue, for index builds."""
        dense = tf.range(1, self.num_items + 1, dtype=tf.int64)
        return {"item_ids": self.index_to_id.lookup(dense - 1), "embeddings": self._item_matrix[1:]}

    def signatures(self) -> dict[str, Any]:
        """The concrete functions to save, by signature name (those of ``SIGNATURE_REGISTRY``)."""
        return {name: getattr(self, entry.method).get_concrete_function()
                for name, entry in SIGNATURE_REGISTRY.items()}


# ------------------------------------------------------------------------------------ the registry
@dataclasses.dataclass(frozen=True)
class ServingSignature:
    """One signature of the export: what computes it, its outputs, its warmup inputs, its summary.

    Attributes:
        name: the signature name clients ask for (the key in ``SIGNATURE_REGISTRY``).
        method: the :class:`SASRecServingModule` ``tf.function`` that computes it; its
            ``input_signature`` declares the inputs (see :attr:`inputs`).
        outputs: the names of the outputs, as in the dictionary the method returns.
        warmup_inputs: the inputs of its TF Serving warmup request, given the warmup history batch
            ``[batch, 1 + n]`` of strings whose first row is ``""`` followed by ``n`` sample item
            ids and whose other rows are all ``""`` (see :func:`write_warmup_requests`).
        description: one line for the CLI's help (:func:`describe_signatures`).
    """

    name: str
    method: str
    outputs: tuple[str, ...]
    warmup_inputs: Callable[[np.ndarray], dict[str, np.ndarray]]
    description: str

    def __post_init__(self):
        function = vars(SASRecServingModule).get(self.method)
        if getattr(function, "input_signature", None) is None:
            raise TypeError(f"signature {self.name!r}: SASRecServingModule.{self.method} must be a tf.function "
                            "with an input_signature")

    @property
    def inputs(self) -> tuple[tf.TensorSpec, ...]:
        """The input specs (named, batch-major), from the method's ``input_signature``."""
        return tuple(vars(SASRecServingModule)[self.method].input_signature)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)


def _history(history: np.ndarray) -> dict[str, np.ndarray]:
    return {HISTORY: history}


def _history_and_candidates(history: np.ndarray) -> dict[str, np.ndarray]:
    """Every row scores the first three entries of the first row (``""`` and two sample ids)."""
    return {HISTORY: history, CANDIDATES: np.repeat(history[:1, :3], len(history), axis=0)}


def _item_ids(history: np.ndarray) -> dict[str, np.ndarray]:
    """As many sample ids as the batch has rows."""
    return {ITEM_IDS: history[0, 1: len(history) + 1]}


def _registry(*entries: ServingSignature) -> Mapping[str, ServingSignature]:
    return types.MappingProxyType({entry.name: entry for entry in entries})


# The exported signatures, in the order of the module docstring, the warmup file and the metadata.
SIGNATURE_REGISTRY: Mapping[str, ServingSignature] = _registry(
    ServingSignature(SERVING_DEFAULT, "recommend", ("item_ids", "scores"), _history,
                     "the top-k next items, best first, never an item of the history"),
    ServingSignature(RECOMMEND_INCLUDING_HISTORY, "recommend_including_history", ("item_ids", "scores"), _history,
                     "the same top-k, history items included (repeat consumption)"),
    ServingSignature(SCORE, "score", ("scores",), _history_and_candidates,
                     "each candidate's score; unknown candidates get the lowest float32"),
    ServingSignature(EMBED, "embed", ("embedding",), _history,
                     "the sequence representation (its dot product with an item embedding is the score)"),
    ServingSignature(ITEM_EMBEDDINGS, "item_embeddings", ("embeddings", "known"), _item_ids,
                     "the embeddings of the given item ids, and whether each id is known"),
)
SIGNATURES = tuple(SIGNATURE_REGISTRY)


def describe_signatures(indent: str = "  ") -> str:
    """The signatures, one line each in export order: ``name(inputs) -> outputs: description``."""
    return "\n".join(
        f"{indent}{name}({', '.join(entry.input_names)}) -> {', '.join(entry.outputs)}: {entry.description}"
        for name, entry in SIGNATURE_REGISTRY.items()
    )


def exact_top_k(scores: tf.Tensor, k: int, block: int = 256, min_columns: int = 8192):
    """``tf.math.top_k(scores, k)`` — the same values and indices, ties included — for wide rows.

    ``top_k`` over ``[B, N]`` costs about ``B * N`` heap pushes on one core per row; for a large
    catalogue (or batch) most of that time goes to items that cannot win. Instead: the maximum
    of each block of ``block`` columns (a vectorised reduction), the top-k blocks by maximum (every
    element of the true top-k lies in one of them), then ``top_k`` over those ``k * block``
    candidates kept in column order, so ties resolve to the lower index exactly as in ``top_k``.
    Rows narrower than ``min_columns`` use ``top_k`` directly.
    """
    if scores.shape[-1] is not None and scores.shape[-1] < max(min_columns, k * block):
        return tf.math.top_k(scores, k=k)
    batch, columns = tf.shape(scores)[0], tf.shape(scores)[1]
    padded = tf.pad(scores, [[0, 0], [0, (-columns) % block]], constant_values=UNKNOWN_SCORE)
    blocks = tf.reshape(padded, [batch, -1, block])
    _, best_blocks = tf.math.top_k(tf.reduce_max(blocks, axis=2), k=k)
    best_blocks = tf.sort(best_blocks, axis=1)  # column order: ties go to the lower index
    candidates = tf.reshape(tf.gather(blocks, best_blocks, batch_dims=1), [batch, k * block])
    values, positions = tf.math.top_k(candidates, k=k)
    indices = tf.gather(best_blocks, positions // block, batch_dims=1) * block + positions % block
    return values, indices


# ------------------------------------------------------------------------------------ versions
def list_versions(model_root: str | os.PathLike[str]) -> list[int]:
    """Version numbers under ``BASE/NAME`` (numeric subdirectories), ascending."""
    root = Path(model_root)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


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
    k: int = 10,
    warmup: bool = True,
    gate_on: str | None = None,
    gate_tolerance: float = 0.0,
    force: bool = False,
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

    Raises:
        FileExistsError: the version exists already.
        GateRefused: the gate refused the model (a ``ValueError``); nothing was written.
        ValueError: a bad name, version, k or gate, or a model with a user embedding.
    """
    from sasrec_tf import card as model_card
    from sasrec_tf.artifacts import TrainedModel, load_trained

    if not name or name in (".", "..") or "/" in name or os.sep in name or name.startswith("."):
        raise ValueError(f"invalid model name {name!r}: use a plain directory name")
    root = Path(export_base) / name
    if version is None:
        version = next_version(root)
    elif isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    version = int(version)
    final = root / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists: versions are immutable; pick another --version")
    # The card and the gate before the model loads: a refusal is quick and writes nothing.
    source = None if isinstance(model, TrainedModel) else str(Path(model).absolute())
    card = (model_card.model_card(source) if source is not None
            else model_card.build_card(model.model.config, versions={}))
    gate = None
    if gate_on is not None:
        published = list_versions(root)
        latest = published[-1] if published else None
        old_card = (model_card.read_card(root / str(latest))
                    if latest is not None and model_card.find_card(root / str(latest)) else None)
        decision = model_card.compare(card, old_card, gate_on, tolerance=gate_tolerance, old_version=latest)
        if not decision.passed and not force:
            raise model_card.GateRefused(decision.message)
        gate = {**dataclasses.asdict(decision), "forced": not decision.passed}
    trained = model if isinstance(model, TrainedModel) else load_trained(model)
    if len(trained.vocab) != trained.model.num_items:
        raise ValueError(f"the vocabulary has {len(trained.vocab)} items but the model {trained.model.num_items}")

    root.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(root)
    staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))  # hidden, non-numeric: never served
    try:
        with tempfile.TemporaryDirectory() as vocab_dir:
            vocab_file = Path(vocab_dir) / "vocab.txt"
            trained.vocab.save(vocab_file)
            module = SASRecServingModule(trained.model, vocab_file, trained.item_counts, k=k)
            tf.saved_model.save(module, str(staging), signatures=module.signatures())
        extra = staging / "assets.extra"
        extra.mkdir()
        if warmup:
            write_warmup_requests(extra / WARMUP_FILE, name, trained.vocab.ids[: module.max_len])
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
            "config": trained.model.config.to_dict(),
        }
        (extra / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        card = model_card.export_card(card, model_name=name, version=version, source=source, gate=gate)
        (extra / model_card.CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp creates 0700; the serving user may differ from the exporter
        os.rename(staging, final)  # atomic on one filesystem; fails if `final` appeared meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def remove_stale_staging(model_root: str | os.PathLike[str], max_age: float = STALE_EXPORT_SECONDS) -> list[Path]:
    """Remove ``.tmp-export-*`` directories of killed exports under ``model_root``; returns them.

    A directory counts as abandoned when nothing inside it changed for ``max_age`` seconds, so a
    concurrent export that is still writing is left alone. Servers never load these (hidden,
    non-numeric names); this only reclaims their disk space, at the next export of the model.
    """
    import time

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
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

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
