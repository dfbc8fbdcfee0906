"""The state of model versions in the local server: GetModelStatus rows, load failures, versions on disk,
loading one version (with its warmup). The rules that use them are in :mod:`sasrec_tf.serving.manager`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Mapping

import grpc
import tensorflow as tf

from sasrec_tf.export.contract import parse_version
from sasrec_tf.serving.errors import StatusError, status_code_from_int
from sasrec_tf.serving.model_config import ModelSource
from sasrec_tf.serving.servable import Servable

__all__ = ["AVAILABLE", "LOADING", "END", "VersionStatus", "Failure", "ModelState", "versions_on_disk", "load_error", "load_and_warm_up"]

logger = logging.getLogger(__name__)

AVAILABLE, LOADING, END = "AVAILABLE", "LOADING", "END"


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One row of GetModelStatus: the version, its state, and the code and message of its last error."""

    version: int
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def versions_on_disk(base: Path) -> list[int] | None:
    """Every child named as a version, ascending; None when the base path is missing (nothing changes).

    As ``PollFileSystemForServable``: no check for ``saved_model.pb`` (a half-copied version is a
    version), and a missing base path is an error that emits nothing rather than "no versions".
    """
    try:
        names = [p.name for p in base.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return sorted({v for v in map(parse_version, names) if v is not None})


def load_error(err: BaseException) -> tuple[grpc.StatusCode, str]:
    """The canonical code and one-line message of a failed load (TF Serving reports the loader's code)."""
    if isinstance(err, StatusError):
        return err.code, err.message
    message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if isinstance(err, tf.errors.OpError):
        return status_code_from_int(err.error_code), message
    if "parse" in message.lower():  # TensorFlow's ReadBinaryProto: DATA_LOSS "Can't parse ... as binary proto"
        return grpc.StatusCode.DATA_LOSS, message
    return grpc.StatusCode.UNKNOWN, message


@dataclasses.dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    attempts: int
    last_attempt: float


@dataclasses.dataclass
class ModelState:
    source: ModelSource
    loaded: dict[int, Servable] = dataclasses.field(default_factory=dict)
    failed: dict[int, Failure] = dataclasses.field(default_factory=dict)
    states: dict[int, VersionStatus] = dataclasses.field(default_factory=dict)  # every version ever seen
    labels: dict[str, int] = dataclasses.field(default_factory=dict)  # the label map in force


def load_and_warm_up(name: str, version: int, path: Path, batching: Mapping[str, int] | None) -> Servable:
    servable = Servable(name, version, path, batching=batching)
    try:
        count = servable.warmup()
    except BaseException:
        servable.close()
        raise
    logger.info("loaded %s version %d (%d warmup requests)", name, version, count)
    return servable
