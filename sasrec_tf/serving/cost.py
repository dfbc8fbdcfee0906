"""What one Predict on an export will compute and answer, bounded before anything is computed.

``max_request_elements`` bounds what a request *carries*; this bounds what it *costs*. A request of
``[1048576, 1]`` histories is 8 MB, yet its score table is rows × (catalogue + 1) float32 values
and its reply rows × k ids and scores: on a 148-item catalogue that was 3.9 GB of memory and a
97.5 MB reply, which gRPC then refused (RESOURCE_EXHAUSTED) after ten seconds of work. The shape
of each export's signatures is known from ``assets.extra/sasrec_export.json`` (catalogue size,
k, embedding size, max_len), so the cost of a request follows from its input shapes alone:

* the largest intermediate, in float32 values ("cells"), at most ``max_cells``
  (``ServingOptions.max_request_cells``), else ``INVALID_ARGUMENT``;
* the reply's size in bytes (gRPC's encoding: 4 bytes a float, each id its length plus 3), at
  most ``max_reply_bytes`` (``max_message_bytes``), else ``RESOURCE_EXHAUSTED``, which is what
  gRPC would have answered after the work.

Both messages name the limit and the number of rows that fit, so a client can split. Measured
(``/proc/PID/status`` of a local server on a 150-item export, ``[222214, 1]`` histories, the
largest the default 2**25 cells allow, a 28 MB reply): VmHWM 739 → 1,406 MB, VmRSS 1,177 MB after
(the allocators keep what they took), unchanged by repeating the request; a refused
``[1048576, 1]`` request raised VmHWM by 54 MB (the 8 MB request itself). A SavedModel
that is not a sasrec-tf export (no ``sasrec_export.json``) has no cost model: only
``max_request_elements`` applies to it. TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

import grpc

from sasrec_tf.export.contract import (
    ASSETS_EXTRA_DIR,
    CANDIDATES,
    EMBED,
    EXPORT_INFO_FILE,
    HISTORY,
    ITEM_EMBEDDINGS,
    ITEM_IDS,
    RECOMMEND_INCLUDING_HISTORY,
    SCORE,
    SERVING_DEFAULT,
)
from sasrec_tf.serving.errors import StatusError

__all__ = ["ExportCost", "RequestCost"]

_ID_OVERHEAD = 3  # a string_val entry: its tag and a length varint (ids under 16 KiB)


@dataclasses.dataclass(frozen=True)
class RequestCost:
    """One request's rows, its largest intermediate (float32 values) and its reply (bytes)."""

    rows: int
    cells: int
    reply_bytes: int


@dataclasses.dataclass(frozen=True)
class ExportCost:
    """The sizes of one export version that a request's cost depends on."""

    num_items: int
    k: int
    embedding_dim: int
    max_len: int
    id_bytes: int  # the longest item id, in UTF-8 bytes

    @classmethod
    def read(cls, version_dir: str | Path) -> "ExportCost | None":
        """From ``assets.extra/sasrec_export.json`` (and the vocabulary asset); None if not an export."""
        version_dir = Path(version_dir)
        try:
            info = json.loads((version_dir / ASSETS_EXTRA_DIR / EXPORT_INFO_FILE).read_text(encoding="utf-8"))
            sizes = {key: int(info[key]) for key in ("num_items", "k", "embedding_dim", "max_len")}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        id_bytes = 64
        vocab = version_dir / "assets" / "vocab.txt"
        if vocab.is_file():
            id_bytes = max((len(line) for line in vocab.read_bytes().splitlines()), default=0)
        return cls(id_bytes=id_bytes, **sizes)

    def estimate(self, signature: str, shapes: Mapping[str, tuple[int, ...]]) -> RequestCost | None:
        """The cost of ``signature`` on inputs of these (checked) shapes; None for a signature it does not know."""
        d, reply_id = self.embedding_dim, self.id_bytes + _ID_OVERHEAD
        if signature in (SERVING_DEFAULT, RECOMMEND_INCLUDING_HISTORY, SCORE, EMBED):
            rows, width = (tuple(shapes.get(HISTORY, ())) + (0, 0))[:2]
            steps = min(width + 1, self.max_len)  # the encoder's sequence length (see export.module)
            encoder = rows * steps * max(d, steps)  # activations and the attention matrix
            if signature == SCORE:
                candidates = (tuple(shapes.get(CANDIDATES, ())) + (0, 0))[1]
                return RequestCost(rows, max(encoder, rows * candidates * d), rows * candidates * 4)
            if signature == EMBED:
                return RequestCost(rows, encoder, rows * d * 4)
            return RequestCost(rows, max(encoder, rows * (self.num_items + 1)),
                               rows * (self.k * (reply_id + 4) + 4))
        if signature == ITEM_EMBEDDINGS:
            rows = (tuple(shapes.get(ITEM_IDS, ())) + (0,))[0]
            return RequestCost(rows, rows * d, rows * (d * 4 + 1))
        return None

    def check(self, signature: str, shapes: Mapping[str, tuple[int, ...]], *, max_cells: int,
              max_reply_bytes: int) -> None:
        """Raise :class:`StatusError` when the request would exceed ``max_cells`` or ``max_reply_bytes``."""
        cost = self.estimate(signature, shapes)
        if cost is None or not cost.rows:
            return
        if cost.cells > max_cells:
            fit = max(1, cost.rows * max_cells // cost.cells)
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"{cost.rows:,} rows of {signature!r} would compute {cost.cells:,} values "
                              f"(rows x catalogue of {self.num_items:,} items, or rows x width x d); this server "
                              f"computes at most {max_cells:,} per request (max_request_cells): split it into "
                              f"requests of at most {fit:,} rows")
        if cost.reply_bytes > max_reply_bytes:
            fit = max(1, cost.rows * max_reply_bytes // cost.reply_bytes)
            raise StatusError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"the reply to {cost.rows:,} rows of {signature!r} would be about "
                              f"{cost.reply_bytes:,} bytes, over this server's message limit of "
                              f"{max_reply_bytes:,}: split it into requests of at most {fit:,} rows")
