"""Checking a shard directory against its manifest before training reads it.

A shard truncated or altered on disk would otherwise surface as TensorFlow's ``DataLossError``
in the middle of an epoch, naming no file. :func:`verify_shards` names the shard instead: each
file must exist with the manifest's size and, where the manifest has one (``sasrec-tf shard``
writes it), the same SHA-256; a manifest without checksums (another writer) has its record
counts checked by reading every record, which also checks TFRecord's own CRCs.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from sasrec_tf.data.errors import DataError

__all__ = ["file_sha256", "verify_shards"]

_CHUNK = 1 << 20
_FIX = "write the shards again (`sasrec-tf shard --overwrite`)"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file (local or any ``tf.io.gfile`` path), read in 1 MiB chunks."""
    import tensorflow as tf

    digest = hashlib.sha256()
    with tf.io.gfile.GFile(os.fspath(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_shards(directory: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    """Raise :class:`~sasrec_tf.data.errors.DataError` naming the first shard of ``manifest``
    that is missing, has another size or checksum than recorded, or (without a checksum) holds
    another number of records or a corrupted one."""
    import tensorflow as tf

    compression = manifest.get("compression") or ""
    for shard in manifest["shards"]:
        path = os.path.join(os.fspath(directory), shard["file"])
        if not tf.io.gfile.exists(path):
            raise DataError(f"missing: the manifest lists it; {_FIX}", path=path)
        size = tf.io.gfile.stat(path).length
        if "bytes" in shard and size != int(shard["bytes"]):
            raise DataError(f"{size} bytes, but the manifest records {shard['bytes']}: the shard was truncated or "
                            f"changed on disk; {_FIX}", path=path)
        if "sha256" in shard:
            if file_sha256(path) != shard["sha256"]:
                raise DataError(f"its SHA-256 differs from the manifest's: the shard is corrupted; {_FIX}", path=path)
            continue
        try:
            records = int(tf.data.TFRecordDataset(path, compression_type=compression).reduce(
                tf.constant(0, tf.int64), lambda count, _: count + 1))
        except tf.errors.DataLossError as err:
            raise DataError(f"corrupted ({err.message.split(' [')[0].split('}} ')[-1]}); {_FIX}",
                            path=path) from None
        if "records" in shard and records != int(shard["records"]):
            raise DataError(f"{records} records, but the manifest records {shard['records']}; {_FIX}", path=path)
