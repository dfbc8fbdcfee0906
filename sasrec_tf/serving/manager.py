"""Which models and versions the local server serves: discovery on disk, version policy, labels.

The rules are TF Serving's (``model_servers/server_core.cc``, the ``AspiredVersionsManager`` with
its availability-preserving policy), so a mistake that breaks a real deployment shows up here:

* ``model_base`` alone: every subdirectory ``BASE/NAME`` (not starting with ``.``) is a model,
  its numeric subdirectories are versions, served with ``latest { num_versions: 1 }`` — TF
  Serving's default for ``--model_base_path``: older versions are NOT_FOUND.
* ``model_config_file``: TF Serving's ``models.config`` (a text ``ModelServerConfig``) gives the
  names, base paths, version policies (``latest { num_versions }``, ``all``, ``specific
  { versions }``) and ``version_labels``. With ``model_base`` as well, each model's base path
  becomes ``model_base/<name>``, so the deployment's ``serving/models.config`` (which names
  container paths) works locally unchanged. The file is re-read when it changes.

Versions: a version directory is served once it holds ``saved_model.pb`` (exports are atomic
renames). A superseded version is unloaded only once a version the policy wants is available;
requests already running on it finish on it. A version that fails to load is retried
``load_retries`` times, ``load_retry_seconds`` apart (TF Serving's ``--max_num_load_retries`` and
``--load_retry_interval_micros``), then stays in state END with its error; removing it, or
replacing it (a new directory or ``saved_model.pb``), is noticed at the next poll without a
restart. As in TF Serving, a restart with a corrupt latest version under ``latest {1}`` serves
nothing for that model until the operator removes or repairs that version; ``latest { n }``
with ``n > 1`` still serves the other versions.

Labels: set when the configuration is (re)loaded, not per request. A label may point only to an
AVAILABLE version; with ``allow_version_labels_for_unavailable_models`` a *new* label may point
to a version not loaded yet, but moving an existing label there is refused
(FAILED_PRECONDITION). As in ``server_core.cc`` the check runs before a reloaded config's new
versions are loaded, so an edit that adds version N+1 and moves a label to it in one go is
refused as a whole: add the version, wait until it is AVAILABLE, then move the label.

Status codes: an unknown model, version or a model with no available version → NOT_FOUND
("Servable not found for request"); an unknown label, with or without a known model →
INVALID_ARGUMENT.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Mapping

import grpc
import tensorflow as tf

from sasrec_tf.export.contract import parse_version
from sasrec_tf.serving.errors import StatusError, status_code_from_int
from sasrec_tf.serving.model_config import ModelSource, read_model_config
from sasrec_tf.serving.options import DEFAULTS
from sasrec_tf.serving.servable import Servable

__all__ = ["ModelSource", "ModelManager", "VersionStatus", "read_model_config"]

logger = logging.getLogger(__name__)

AVAILABLE, LOADING, END = "AVAILABLE", "LOADING", "END"


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One row of GetModelStatus: the version, its state, and the code and message of its last error."""

    version: int
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def _versions_on_disk(base: Path) -> list[int]:
    try:
        entries = list(base.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = ((parse_version(p.name), p) for p in entries)
    return sorted(version for version, p in found if version is not None and (p / "saved_model.pb").is_file())


def _fingerprint(path: Path) -> tuple:
    """What changes when a version directory is replaced or repaired (a failed load is then retried)."""
    marks = []
    for part in (path, path / "saved_model.pb", path / "variables"):
        try:
            stat = part.stat()
        except OSError:
            marks.append(None)
        else:
            marks.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(marks)


def _load_error(err: BaseException) -> tuple[grpc.StatusCode, str]:
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
class _Failure:
    code: grpc.StatusCode
    message: str
    attempts: int
    last_attempt: float
    fingerprint: tuple


@dataclasses.dataclass
class _ModelState:
    source: ModelSource
    loaded: dict[int, Servable] = dataclasses.field(default_factory=dict)
    failed: dict[int, _Failure] = dataclasses.field(default_factory=dict)
    states: dict[int, VersionStatus] = dataclasses.field(default_factory=dict)  # every version ever seen
    labels: dict[str, int] = dataclasses.field(default_factory=dict)  # the label map in force


class ModelManager:
    """Loads, swaps and unloads :class:`Servable` versions; resolves a request's model spec.

    Loads run outside the lock; the swap is one dictionary update, and a request holds a reference
    to its servable, so a version is never unloaded under a running request.
    """

    def __init__(
        self,
        model_base: str | os.PathLike[str] | None = None,
        model_config_file: str | os.PathLike[str] | None = None,
        labels: Mapping[str, Mapping[str, int]] | None = None,
        batching: Mapping[str, int] | None = None,
        *,
        allow_version_labels_for_unavailable_models: bool = DEFAULTS.allow_version_labels_for_unavailable_models,
        load_retries: int = DEFAULTS.load_retries,
        load_retry_seconds: float = DEFAULTS.load_retry_seconds,
    ):
        if model_base is None and model_config_file is None:
            raise ValueError("give model_base, model_config_file, or both")
        if load_retries < 0 or load_retry_seconds < 0:
            raise ValueError("load_retries and load_retry_seconds must be >= 0")
        self.model_base = Path(model_base) if model_base is not None else None
        self.model_config_file = Path(model_config_file) if model_config_file is not None else None
        self.allow_unavailable_labels = bool(allow_version_labels_for_unavailable_models)
        self.load_retries = int(load_retries)
        self.load_retry_seconds = float(load_retry_seconds)
        self._extra_labels = {name: dict(value) for name, value in (labels or {}).items()}
        self._batching = dict(batching) if batching is not None else None
        self._models: dict[str, _ModelState] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, int], threading.Lock] = {}
        self._config_mtime: float | None = None
        self._config_sources: list[ModelSource] = []
        self._applied: dict[str, ModelSource] | None = None  # the sources in force (None: first poll)
        self._rejected: str | None = None  # why the last desired configuration was refused
        self._poll_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- discovery
    def _sources(self) -> dict[str, ModelSource]:
        if self.model_config_file is not None:
            mtime = self.model_config_file.stat().st_mtime_ns
            if mtime != self._config_mtime:
                self._config_sources = read_model_config(self.model_config_file, self.model_base)
                self._config_mtime = mtime
            sources = self._config_sources
        else:
            if not self.model_base.is_dir():
                raise FileNotFoundError(
                    f"model base {self.model_base} is not a directory (expected BASE/NAME/<version>/)")
            entries = sorted(p for p in self.model_base.iterdir() if p.is_dir() and not p.name.startswith("."))
            sources = [ModelSource(name=p.name, base_path=p) for p in entries]
        return {
            s.name: dataclasses.replace(s, labels={**s.labels, **self._extra_labels[s.name]})
            if s.name in self._extra_labels else s
            for s in sources
        }

    def _check_labels(self, sources: Mapping[str, ModelSource]) -> None:
        """Refuse labels that point to a version that is not AVAILABLE (``UpdateModelVersionLabelMap``)."""
        with self._lock:
            for name, source in sources.items():
                state = self._models.get(name)
                available = set(state.loaded) if state is not None else set()
                current = state.labels if state is not None else {}
                for label, version in sorted(source.labels.items()):
                    if version in available or current.get(label) == version:
                        continue
                    if self.allow_unavailable_labels and label not in current:
                        continue
                    raise StatusError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Request to assign label {label!r} to version {version} of model {name!r}, which is not "
                        f"currently available for inference: add the version first, wait until it is AVAILABLE, "
                        f"then move the label")

    def poll(self) -> None:
        """Scan once: apply a changed configuration, load wanted versions, unload the rest, retry failures.

        Raises:
            ValueError: on the first poll, a label that cannot be assigned (the server does not start,
                as ``tensorflow_model_server`` would not).
        """
        desired = self._sources()
        first = self._applied is None
        changed = not first and desired != self._applied
        if changed:
            try:
                self._check_labels(desired)  # before anything new loads, as server_core.cc does
            except StatusError as err:
                if err.message != self._rejected:
                    logger.error("configuration not applied, still serving the previous one: %s", err.message)
                self._rejected = err.message
                desired, changed = self._applied, False
            else:
                self._rejected = None
        self._applied = desired
        with self._lock:
            for name in list(self._models):
                if name not in desired:
                    logger.info("model %s removed", name)
                    for servable in self._models.pop(name).loaded.values():
                        servable.close()
            for name, source in desired.items():
                self._models.setdefault(name, _ModelState(source)).source = source
        if changed:
            self._set_labels(desired)
        for name, source in desired.items():
            self._poll_model(name, source)
        if first:  # at start-up the labels are checked once the models have loaded
            try:
                self._check_labels(desired)
            except StatusError as err:
                raise ValueError(err.message) from None
            self._set_labels(desired)

    def _set_labels(self, sources: Mapping[str, ModelSource]) -> None:
        with self._lock:
            for name, source in sources.items():
                if name in self._models:
                    self._models[name].labels = dict(source.labels)

    def _poll_model(self, name: str, source: ModelSource) -> None:
        on_disk = _versions_on_disk(source.base_path)
        wanted = source.wanted(on_disk)
        now = time.monotonic()
        with self._lock:
            state = self._models.get(name)
            if state is None:
                return
            for version, failure in list(state.failed.items()):
                if version not in on_disk or _fingerprint(source.base_path / str(version)) != failure.fingerprint:
                    del state.failed[version]  # removed or replaced: a fresh start
                    state.states.pop(version, None)
            to_load = [v for v in sorted(wanted) if v not in state.loaded and self._due(state.failed.get(v), now)]
        for version in to_load:
            self._load(name, version)
        with self._lock:
            state = self._models.get(name)
            if state is None:
                return
            keep = set(wanted)
            if not (keep & set(state.loaded)):  # no wanted version available: keep serving what is loaded
                keep |= set(state.loaded)
            for version in [v for v in state.loaded if v not in keep]:
                logger.info("unloading %s version %d", name, version)
                state.loaded.pop(version).close()  # running requests keep their reference
                state.states[version] = VersionStatus(version, END)

    def _due(self, failure: _Failure | None, now: float) -> bool:
        """Whether a version should be (re)tried: never failed, or retries left and the interval passed."""
        if failure is None:
            return True
        return failure.attempts <= self.load_retries and now - failure.last_attempt >= self.load_retry_seconds

    def _load(self, name: str, version: int) -> None:
        with self._lock:
            lock = self._load_locks.setdefault((name, version), threading.Lock())
        with lock:
            with self._lock:
                state = self._models.get(name)
                if state is None or version in state.loaded:
                    return
                path = state.source.base_path / str(version)
                state.states[version] = VersionStatus(version, LOADING)
            fingerprint = _fingerprint(path)
            logger.info("loading %s version %d from %s", name, version, path)
            try:
                servable = _load_and_warm_up(name, version, path, self._batching)
            except Exception as err:  # noqa: BLE001 - any load failure is reported, not raised
                code, message = _load_error(err)
                with self._lock:
                    state = self._models.get(name)
                    if state is None:
                        return
                    previous = state.failed.get(version)
                    attempts = previous.attempts + 1 if previous is not None else 1
                    state.failed[version] = _Failure(code, message, attempts, time.monotonic(), fingerprint)
                    final = attempts > self.load_retries
                    state.states[version] = VersionStatus(version, END, code, message) if final else \
                        VersionStatus(version, LOADING)
                retry = "giving up" if final else \
                    f"retry {attempts} of {self.load_retries} in {self.load_retry_seconds:g} s"
                logger.error("failed to load %s version %d (%s): %s", name, version, retry, message)
                return
            with self._lock:
                state = self._models.get(name)
                if state is None:
                    servable.close()
                    return
                state.failed.pop(version, None)
                state.loaded[version] = servable
                state.states[version] = VersionStatus(version, AVAILABLE)

    # ----------------------------------------------------------------------------- background polling
    def start(self, poll_seconds: float = 1.0) -> None:
        """Poll now (so that the first request finds the models), then every ``poll_seconds``."""
        self.poll()
        if poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._poll_loop, args=(poll_seconds,), daemon=True,
                                            name="sasrec-model-poller")
            self._thread.start()

    def _poll_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.poll()
            except Exception as err:  # noqa: BLE001 - keep serving what is loaded
                message = f"{type(err).__name__}: {err}"
                if message != self._poll_error:  # one line per distinct problem, not one per poll
                    logger.error("polling the model directories failed (still serving what is loaded): %s", message)
                self._poll_error = message
            else:
                if self._poll_error is not None:
                    logger.info("polling the model directories works again")
                self._poll_error = None

    def stop(self) -> None:
        """Stop polling and release the batching threads of every loaded version."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            for state in self._models.values():
                for servable in state.loaded.values():
                    servable.close()

    # ----------------------------------------------------------------------------- requests
    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def _state(self, name: str) -> _ModelState:
        state = self._models.get(name)
        if state is None:
            raise StatusError(grpc.StatusCode.NOT_FOUND,
                              f"Servable not found for request: model {name!r} is not served "
                              f"(served: {sorted(self._models)})")
        return state

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a model spec: the latest available version, or the one named (never loads)."""
        with self._lock:
            if label:  # TF Serving looks the label up first, even for an unknown model
                state = self._models.get(name)
                labels = state.labels if state is not None else {}
                if label not in labels:
                    raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                                      f"Unrecognized servable version label: {label!r} for model {name!r} "
                                      f"(labels: {dict(labels) or 'none'})")
                version = labels[label]
            state = self._state(name)
            if version is None:
                if state.loaded:
                    return state.loaded[max(state.loaded)]
                raise StatusError(grpc.StatusCode.NOT_FOUND,
                                  f"Servable not found for request: Latest({name}): no version is available"
                                  f"{self._why(state)}")
            if version in state.loaded:
                return state.loaded[version]
            raise StatusError(grpc.StatusCode.NOT_FOUND,
                              f"Servable not found for request: Specific({name}, {version}); available: "
                              f"{sorted(state.loaded) or 'none'}{self._why(state, version)}")

    @staticmethod
    def _why(state: _ModelState, version: int | None = None) -> str:
        """Why nothing (or not ``version``) is served, for the error message."""
        failures = {v: f for v, f in state.failed.items() if version is None or v == version}
        if failures:
            v, failure = max(failures.items())
            return f" (version {v} failed to load: {failure.message})"
        if version is None and not state.states:
            return f" (no version directory with a saved_model.pb under {state.source.base_path})"
        return ""

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """GetModelStatus: every version the server has seen (or only ``version``), newest first.

        As TF Serving's ``get_model_status_impl.cc``: labels play no part, nothing is loaded, a
        model without versions and an unknown version are NOT_FOUND, unloaded versions stay as END.
        """
        with self._lock:
            state = self._state(name)
            rows = dict(state.states)
        if version is not None:
            if version not in rows:
                raise StatusError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name!r}")
            return [rows[version]]
        if not rows:
            raise StatusError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name!r}")
        return [rows[v] for v in sorted(rows, reverse=True)]


def _load_and_warm_up(name: str, version: int, path: Path, batching: Mapping[str, int] | None) -> Servable:
    servable = Servable(name, version, path, batching=batching)
    try:
        count = servable.warmup()
    except BaseException:
        servable.close()
        raise
    logger.info("loaded %s version %d (%d warmup requests)", name, version, count)
    return servable
