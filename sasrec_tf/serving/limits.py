"""What one request to the local server may cost; importable without TensorFlow (the CLI's help uses it)."""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_REQUEST_ELEMENTS"]

# 2**20 string ids: e.g. 8,192 histories of 128 items. A request's cost grows with its rows times
# the catalogue (every row is scored against every item), so big offline jobs should chunk anyway.
DEFAULT_MAX_REQUEST_ELEMENTS = 1 << 20
