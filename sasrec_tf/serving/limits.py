"""What one request to the local server may cost (kept for imports of it; the defaults live in
:mod:`sasrec_tf.serving.options`)."""

from __future__ import annotations

from sasrec_tf.serving.options import DEFAULT_MAX_REQUEST_ELEMENTS

__all__ = ["DEFAULT_MAX_REQUEST_ELEMENTS"]
