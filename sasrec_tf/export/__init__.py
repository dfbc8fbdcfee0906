"""Export a trained SASRec as a versioned SavedModel for TensorFlow Serving and any TF program.

``export_saved_model(model_dir, BASE, NAME)`` writes ``BASE/NAME/<version>/`` atomically (the
version is built in a hidden temporary directory next to it, then renamed), so a server polling
``BASE/NAME`` never sees a half-written version::

    saved_model.pb, variables/        the graph and the weights (no Python needed to run them;
                                      exported from a model directory, the item tables are
                                      stored as row slices, which every TensorFlow reader
                                      assembles: sasrec_tf.export.tables)
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
    items older than the most recent ``max_len``), never padding; and ``known_items`` ``DT_INT32
    [batch]``: how many of the history's ids the model knows (0: the row is the popularity list,
    see "Empty histories" below, so a caller can tell it from a personal recommendation).
``recommend_including_history``
    ``history`` → ``item_ids``, ``scores`` and ``known_items`` as ``serving_default``: the same top-k without
    excluding the history's items (repeat-consumption domains).
``score``
    ``history`` and ``candidates`` ``DT_STRING [batch, m]`` → ``scores`` ``DT_FLOAT [batch, m]``:
    each candidate's score for its row's history.
``embed``
    ``history`` → ``embedding`` ``DT_FLOAT [batch, d]``: the sequence representation, whose dot
    product with an item embedding, plus the item's ``score_bias``, is the item's score (for an
    external nearest-neighbour index).
``item_embeddings``
    ``item_ids`` ``DT_STRING [batch]`` → ``embeddings`` ``DT_FLOAT [batch, d]``, ``known``
    ``DT_BOOL [batch]`` and ``score_bias`` ``DT_FLOAT [batch]``: 0 for every item unless the export
    carries a cold-score offset (``export_saved_model(..., cold_score_offset=O)``, ``sasrec-tf
    export --cold-score-offset``), then ``-O`` for each cold item (a model with item features: an
    item without a trained id row, held out or added by ``sasrec-tf add-items``), which every
    signature scores ``O`` lower than its feature vector says: the exposure knob for new items.
    Items are looked up by id rather than returned all at once: that works
    under Predict (every signature input is required, responses stay within gRPC's message size,
    requests batch), and a client pages through the vocabulary it already has. Programs that load
    the SavedModel get the whole matrix with ``loaded.all_item_embeddings()`` (with ``score_bias``).

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

The package in three parts:

* :mod:`sasrec_tf.export.contract` -- what clients build requests with (signature, input and
  output names, ``UNKNOWN_SCORE``, file names, ``SIGNATURE_REGISTRY``); no TensorFlow.
* :mod:`sasrec_tf.export.module` -- the graph: :class:`SASRecServingModule` and ``exact_top_k``.
* :mod:`sasrec_tf.export.publish` -- version numbers, atomic staging, the publish gate, warmup
  requests and :func:`export_saved_model`; TensorFlow is imported when exporting, not before.

``import sasrec_tf.export`` loads the contract and publishing only; the graph's names
(``SASRecServingModule``, ``exact_top_k``) load TensorFlow on first use.

Adding a signature: one :class:`ServingSignature` entry in ``SIGNATURE_REGISTRY`` (its inputs,
outputs, warmup inputs and a one-line description), a ``tf.function`` method of
:class:`SASRecServingModule` whose ``input_signature`` is the entry's inputs, its tests, and its
paragraph above. ``SIGNATURES``, ``SASRecServingModule.signatures()``, the warmup requests, the
``signatures`` list of ``sasrec_export.json`` and :func:`describe_signatures` (the CLI's help)
all follow the registry.
"""

from __future__ import annotations

from sasrec_tf._lazy import lazy_exports

from sasrec_tf.export.contract import (
    ASSETS_EXTRA_DIR,
    CANDIDATES,
    DEFAULT_K,
    EMBED,
    EXPORT_INFO_FILE,
    HISTORY,
    ITEM_EMBEDDINGS,
    ITEM_IDS,
    KNOWN_ITEMS,
    RECOMMEND_INCLUDING_HISTORY,
    SCORE,
    SERVING_DEFAULT,
    SIGNATURE_REGISTRY,
    SIGNATURES,
    UNKNOWN_SCORE,
    WARMUP_FILE,
    ServingSignature,
    SignatureInput,
    describe_signatures,
)
from sasrec_tf.export.publish import (
    STALE_EXPORT_SECONDS,
    export_saved_model,
    list_versions,
    next_version,
    remove_stale_staging,
    write_warmup_requests,
)

# The graph's names, imported with TensorFlow on first use (PEP 562).
_GRAPH = {"SASRecServingModule": "sasrec_tf.export.module", "exact_top_k": "sasrec_tf.export.module"}

__all__ = [
    "SERVING_DEFAULT", "RECOMMEND_INCLUDING_HISTORY", "SCORE", "EMBED", "ITEM_EMBEDDINGS", "SIGNATURES",
    "HISTORY", "CANDIDATES", "ITEM_IDS", "KNOWN_ITEMS", "ServingSignature", "SIGNATURE_REGISTRY", "describe_signatures",
    "UNKNOWN_SCORE", "WARMUP_FILE", "EXPORT_INFO_FILE", "SASRecServingModule", "export_saved_model",
    "write_warmup_requests", "next_version", "list_versions", "exact_top_k",
    "ASSETS_EXTRA_DIR", "DEFAULT_K", "STALE_EXPORT_SECONDS", "SignatureInput", "remove_stale_staging",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _GRAPH)
