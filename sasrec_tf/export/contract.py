"""The export's serving contract: signature, input and output names, file names, the unknown score.

What a client (``sasrec_tf.serving.client``, the REST helpers, a program in another language)
needs to build requests and read answers, declared once and importable without TensorFlow: the
graph that implements these signatures is :mod:`sasrec_tf.export.module`, the writing of a
version :mod:`sasrec_tf.export.publish`. Each signature is one :class:`ServingSignature` entry of
:data:`SIGNATURE_REGISTRY`, whose inputs are plain data (:class:`SignatureInput`), so
:func:`describe_signatures` (the CLI's help) needs no TensorFlow either.
"""

from __future__ import annotations

import dataclasses
import types
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

# The score of an unknown candidate and of a missing recommendation: the lowest float32, declared
# once with the ranking rules (finite, unlike -inf, because TF Serving's REST API writes JSON).
from sasrec_tf.layout import ASSETS_EXTRA_DIR  # noqa: F401  (re-exported: part of the contract)
from sasrec_tf.ranking.rules import UNKNOWN_SCORE

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = [
    "SERVING_DEFAULT", "RECOMMEND_INCLUDING_HISTORY", "SCORE", "EMBED", "ITEM_EMBEDDINGS", "SIGNATURES",
    "HISTORY", "CANDIDATES", "ITEM_IDS", "KNOWN_ITEMS", "SignatureInput", "ServingSignature", "SIGNATURE_REGISTRY",
    "describe_signatures", "DEFAULT_K", "UNKNOWN_SCORE", "ASSETS_EXTRA_DIR", "WARMUP_FILE", "EXPORT_INFO_FILE",
    "MAX_VERSION", "parse_version",
]

# Signature names.
SERVING_DEFAULT = "serving_default"
RECOMMEND_INCLUDING_HISTORY = "recommend_including_history"
SCORE = "score"
EMBED = "embed"
ITEM_EMBEDDINGS = "item_embeddings"
# Input names (clients build their requests with these).
HISTORY = "history"
CANDIDATES = "candidates"
ITEM_IDS = "item_ids"
# An output of the recommendation signatures: [batch] int32, how many of each request history's ids
# the model knows (0: none; that row is the popularity list, not a personal recommendation).
KNOWN_ITEMS = "known_items"


# How many items the recommendation signatures return unless the export is told otherwise.
DEFAULT_K = 10

# An export version's extra files (sasrec_tf.layout.ASSETS_EXTRA_DIR, which the model card shares):
# TF Serving ignores this directory apart from the warmup file.
WARMUP_FILE = "tf_serving_warmup_requests"
EXPORT_INFO_FILE = "sasrec_export.json"

# The largest version number: TF Serving reads a version directory's name as an int64
# (absl::SimpleAtoi in file_system_storage_path_source.cc) and the protos carry it as one.
MAX_VERSION = 2**63 - 1


def parse_version(name: str) -> int | None:
    """The version number a directory ``name`` stands for, or None when it is not a version.

    A version is ASCII digits (``str.isdigit`` also accepts ``"²"`` and other Unicode digits,
    which ``int`` then refuses) whose value fits an int64, as TF Serving parses version
    directories; anything else (``"²"``, ``"1e3"``, ``" 7"``, ``"99999999999999999999"``) is not a
    version and is ignored by the server, ``sasrec-tf info`` and the export's version numbering.
    Stricter than TF Serving in one respect: no sign or surrounding blanks.
    """
    if not name or not name.isascii() or not name.isdigit():
        return None
    value = int(name)
    return value if value <= MAX_VERSION else None


@dataclasses.dataclass(frozen=True)
class SignatureInput:
    """One named, batch-major input of a signature, as plain data.

    Attributes:
        name: the input's name in a Predict request.
        dtype: the TensorFlow dtype name (``"string"``: ``DT_STRING``).
        shape: the shape, ``None`` for a dimension of any size (the first is the batch).
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def tensor_spec(self) -> "tf.TensorSpec":
        """The ``tf.TensorSpec`` of this input (imports TensorFlow; for the graph and TF programs)."""
        import tensorflow as tf

        return tf.TensorSpec(self.shape, self.dtype, name=self.name)


HISTORY_INPUT = SignatureInput(HISTORY, "string", (None, None))
CANDIDATES_INPUT = SignatureInput(CANDIDATES, "string", (None, None))
ITEM_IDS_INPUT = SignatureInput(ITEM_IDS, "string", (None,))


@dataclasses.dataclass(frozen=True)
class ServingSignature:
    """One signature of the export: its inputs, its outputs, what computes it, its warmup, its summary.

    Attributes:
        name: the signature name clients ask for (the key in ``SIGNATURE_REGISTRY``).
        method: the :class:`~sasrec_tf.export.module.SASRecServingModule` ``tf.function`` that
            computes it (its ``input_signature`` is built from :attr:`declared_inputs`).
        declared_inputs: the inputs, batch-major, as plain data.
        outputs: the names of the outputs, as in the dictionary the method returns.
        warmup_inputs: the inputs of its TF Serving warmup request, given the warmup history batch
            ``[batch, 1 + n]`` of strings whose first row is ``""`` followed by ``n`` sample item
            ids and whose other rows are all ``""`` (see
            :func:`~sasrec_tf.export.publish.write_warmup_requests`).
        description: one line for the CLI's help (:func:`describe_signatures`).
    """

    name: str
    method: str
    declared_inputs: tuple[SignatureInput, ...]
    outputs: tuple[str, ...]
    warmup_inputs: Callable[[np.ndarray], dict[str, np.ndarray]]
    description: str

    @property
    def input_names(self) -> tuple[str, ...]:
        """The names of the inputs, in the method's argument order."""
        return tuple(spec.name for spec in self.declared_inputs)

    @property
    def inputs(self) -> tuple["tf.TensorSpec", ...]:
        """The input specs as ``tf.TensorSpec`` (named, batch-major; imports TensorFlow)."""
        return tuple(spec.tensor_spec() for spec in self.declared_inputs)


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


# The exported signatures, in the order of the package docstring, the warmup file and the metadata.
SIGNATURE_REGISTRY: Mapping[str, ServingSignature] = _registry(
    ServingSignature(SERVING_DEFAULT, "recommend", (HISTORY_INPUT,), ("item_ids", "scores", KNOWN_ITEMS),
                     _history,
                     "the top-k next items, best first, never an item of the history; known_items = 0: "
                     "no history id is known, the row is the popularity list"),
    ServingSignature(RECOMMEND_INCLUDING_HISTORY, "recommend_including_history", (HISTORY_INPUT,),
                     ("item_ids", "scores", KNOWN_ITEMS), _history,
                     "the same top-k, history items included (repeat consumption)"),
    ServingSignature(SCORE, "score", (HISTORY_INPUT, CANDIDATES_INPUT), ("scores",), _history_and_candidates,
                     "each candidate's score; unknown candidates get the lowest float32"),
    ServingSignature(EMBED, "embed", (HISTORY_INPUT,), ("embedding",), _history,
                     "the sequence representation (its dot product with an item embedding, plus the item's "
                     "score_bias, is the score)"),
    ServingSignature(ITEM_EMBEDDINGS, "item_embeddings", (ITEM_IDS_INPUT,), ("embeddings", "known", "score_bias"),
                     _item_ids,
                     "the embeddings of the given item ids, whether each id is known, and each item's score bias "
                     "(the cold-score offset: 0 unless exported with one)"),
)
SIGNATURES = tuple(SIGNATURE_REGISTRY)


def describe_signatures(indent: str = "  ") -> str:
    """The signatures, one line each in export order: ``name(inputs) -> outputs: description``.

    Args:
        indent: put before each line.

    Returns:
        The lines joined by newlines (no trailing newline).
    """
    return "\n".join(
        f"{indent}{name}({', '.join(entry.input_names)}) -> {', '.join(entry.outputs)}: {entry.description}"
        for name, entry in SIGNATURE_REGISTRY.items()
    )
