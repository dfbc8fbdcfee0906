"""Which models and versions the local server serves: discovery on disk, version policy, labels.

The rules are TF Serving 2.20's (``model_servers/server_core.cc``, ``server.cc``, the
``AspiredVersionsManager`` with its ``AvailabilityPreservingPolicy`` and the
``FileSystemStoragePathSource``), so a mistake that breaks a real deployment shows up here:

* ``model_base`` alone: every subdirectory ``BASE/NAME`` (not starting with ``.``) is a model,
  served with ``latest { num_versions: 1 }`` (TF Serving's default for ``--model_base_path``).
* ``model_config_file``: TF Serving's ``models.config`` (a text ``ModelServerConfig``, see
  :mod:`sasrec_tf.serving.model_config`). With ``model_base`` as well, each model's base path
  becomes ``model_base/<name>``, so the deployment's ``serving/models.config`` (which names
  container paths) works locally unchanged. The file is re-read at every poll.

Start-up (``server_core.cc`` ``ReloadConfig``/``ConnectAdaptersToManagerAndAwaitModelLoads``,
``load_servables_fast.cc``, ``main.cc`` "Failed to start server"): labels are assigned before
anything is loaded, so without ``allow_version_labels_for_unavailable_models`` any label refuses
the start; then every model's newest wanted version must become AVAILABLE (after its load
retries), else the server does not start; a model with no version yet is waited for (the ports
open only once every model has one). Kinder in one case: with ``poll_seconds=0`` nothing would
ever appear, so that start fails at once instead of waiting forever.

Versions (``file_system_storage_path_source.cc``): every child of the base path whose name is a
version number is a version (a half-copied ``3/`` too; it fails to load). A superseded version is
unloaded only once a version the policy wants is available; when the policy wants none (an
empty base path), everything is unloaded; a missing base path changes nothing. A version that
fails to load is retried ``load_retries`` times, ``load_retry_seconds`` apart, then stays END
with its error; it is never retried in place (``main.cc`` does not set
``enable_reload_servables_with_error``): remove it for at least one poll, or export a new number.
At run time the version being served meanwhile stays served.

Labels (``UpdateModelVersionLabelMap``): checked at every poll, before the poll's new versions
load. A label may point only to an AVAILABLE version; with
``allow_version_labels_for_unavailable_models`` a label that is new or unchanged may point
anywhere, but moving an existing label to a version not loaded is refused (FAILED_PRECONDITION).
A refused configuration is not applied (versions and labels stay as they were) and is logged.

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

from sasrec_tf.serving.errors import StatusError
from sasrec_tf.serving.model_config import ModelSource, read_model_config
from sasrec_tf.serving.options import DEFAULTS
from sasrec_tf.serving.servable import Servable
from sasrec_tf.serving.version_state import (
    AVAILABLE,
    END,
    LOADING,
    VersionStatus,
    Failure,
    ModelState,
    load_and_warm_up,
    load_error,
    versions_on_disk,
)

__all__ = ["ModelSource", "ModelManager", "VersionStatus", "read_model_config"]

logger = logging.getLogger(__name__)

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
        self._models: dict[str, ModelState] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, int], threading.Lock] = {}
        self._config_mtime: float | None = None
        self._config_sources: list[ModelSource] = []
        self._applied: dict[str, ModelSource] | None = None  # the sources in force (None: first poll)
        self._rejected: str | None = None  # why the last configuration read was refused (None: applied)
        self._poll_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- discovery
    def _sources(self) -> dict[str, ModelSource]:
        if self.model_config_file is not None:
            stat = self.model_config_file.stat()
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._config_mtime:
                self._config_sources = read_model_config(self.model_config_file, self.model_base)
                self._config_mtime = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
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
                    if version in available:
                        continue
                    if self.allow_unavailable_labels and current.get(label, version) == version:
                        continue  # a new or unchanged label may wait for its version (server_core.cc ~560-571)
                    flag = "" if self.allow_unavailable_labels else \
                        " (or start with --allow_version_labels_for_unavailable_models)"
                    raise StatusError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Request to assign label {label!r} to version {version} of model {name!r}, which is not "
                        f"currently available for inference: add the version first, wait until it is AVAILABLE, "
                        f"then move the label{flag}")

    @property
    def rejected(self) -> str | None:
        """Why the configuration read at the last poll was not applied, or None when it was."""
        return self._rejected

    def _initial_load(self, poll_seconds: float) -> None:
        """Start-up as ``ServerCore::Create``: labels first, then wait for every model's newest version.

        Raises:
            ValueError: a label without the flag, a newest version that did not become AVAILABLE,
                or (``poll_seconds=0``) a model with no version to wait for.
        """
        desired = self._sources()
        with self._lock:
            for name, source in desired.items():
                self._models[name] = ModelState(source)
        try:
            self._check_labels(desired)  # server_core.cc ~514: before anything is loaded
        except StatusError as err:
            raise ValueError(f"Failed to start server: {err.message}") from None
        self._set_labels(desired)
        self._applied = desired
        waiting_logged: set[str] = set()
        step = min([s for s in (poll_seconds, self.load_retry_seconds) if s > 0] or [0.05])
        while True:
            pending, failed = [], []
            for name, source in desired.items():
                self._poll_model(name, source)
                on_disk = versions_on_disk(source.base_path) or []
                wanted = source.wanted(on_disk)
                with self._lock:
                    state = self._models[name]
                    if not wanted:
                        pending.append(name)
                        if name not in waiting_logged:
                            logger.warning("no version of model %s under %s yet: waiting for one (the ports open "
                                           "once every model has one, as tensorflow_model_server's)",
                                           name, source.base_path)
                            waiting_logged.add(name)
                        continue
                    newest = max(wanted)
                    failure = state.failed.get(newest)
                    if newest in state.loaded:
                        continue
                    if failure is not None and failure.attempts > self.load_retries:
                        failed.append(f"{{name: {name} version: {newest}}} due to error: {failure.message}")
                    else:
                        pending.append(name)
            if failed:
                raise ValueError(f"Failed to start server: {len(failed)} servable(s) did not become available: "
                                 + "; ".join(failed))
            if not pending:
                return
            if poll_seconds <= 0 and all(name in waiting_logged for name in pending):
                raise ValueError(f"Failed to start server: no version of {', '.join(sorted(pending))} to load, and "
                                 f"poll_seconds=0 never looks again (tensorflow_model_server would wait)")
            if self._stop.wait(step):
                raise ValueError("stopped before the models loaded")

    def poll(self) -> None:
        """Scan once (after :meth:`start`): re-check the labels, apply a changed configuration, load
        wanted versions, unload the rest, retry failures."""
        if self._applied is None:
            raise RuntimeError("call start() first: the first load follows the start-up rules")
        desired = self._sources()
        try:
            self._check_labels(desired)  # every poll, before anything new loads (server_core.cc ~514, ~556-584)
        except StatusError as err:
            if err.message != self._rejected:
                logger.error("configuration not applied, still serving the previous one: %s", err.message)
            self._rejected = err.message
            desired = self._applied
        else:
            if self._rejected is not None:
                logger.info("configuration applied")
            self._rejected = None
        changed = desired != self._applied
        self._applied = desired
        with self._lock:
            for name in list(self._models):
                if name not in desired:
                    logger.info("model %s removed", name)
                    for servable in self._models.pop(name).loaded.values():
                        servable.close()
            for name, source in desired.items():
                self._models.setdefault(name, ModelState(source)).source = source
        if changed:
            self._set_labels(desired)
        for name, source in desired.items():
            self._poll_model(name, source)

    def _set_labels(self, sources: Mapping[str, ModelSource]) -> None:
        with self._lock:
            for name, source in sources.items():
                if name in self._models:
                    self._models[name].labels = dict(source.labels)

    def _poll_model(self, name: str, source: ModelSource) -> None:
        on_disk = versions_on_disk(source.base_path)
        if on_disk is None:  # a missing base path emits nothing: what is loaded stays
            return
        wanted = source.wanted(on_disk)
        now = time.monotonic()
        with self._lock:
            state = self._models.get(name)
            if state is None:
                return
            for version in [v for v in state.failed if v not in on_disk]:
                del state.failed[version]  # gone for a poll: it may come back as a fresh version
            to_load = [v for v in sorted(wanted) if v not in state.loaded and self._due(state.failed.get(v), now)]
        for version in to_load:
            self._load(name, version)
        with self._lock:
            state = self._models.get(name)
            if state is None:
                return
            keep = set(wanted)
            if wanted and not (keep & set(state.loaded)):  # availability_preserving_policy.cc ~65-75
                keep |= set(state.loaded)  # a wanted version is not available yet: keep serving the old one
            for version in [v for v in state.loaded if v not in keep]:
                logger.info("unloading %s version %d", name, version)
                state.loaded.pop(version).close()  # running requests keep their reference
                state.states[version] = VersionStatus(version, END)

    def _due(self, failure: Failure | None, now: float) -> bool:
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
            logger.info("loading %s version %d from %s", name, version, path)
            try:
                servable = load_and_warm_up(name, version, path, self._batching)
            except Exception as err:  # noqa: BLE001 - any load failure is reported, not raised
                code, message = load_error(err)
                with self._lock:
                    state = self._models.get(name)
                    if state is None:
                        return
                    previous = state.failed.get(version)
                    attempts = previous.attempts + 1 if previous is not None else 1
                    state.failed[version] = Failure(code, message, attempts, time.monotonic())
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
        """Load as ``tensorflow_model_server`` starts (see the module docstring), then poll every ``poll_seconds``.

        Raises:
            ValueError: the server would not start (the message says why).
        """
        self._initial_load(poll_seconds)
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

    def _state(self, name: str) -> ModelState:
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
    def _why(state: ModelState, version: int | None = None) -> str:
        """Why nothing (or not ``version``) is served, for the error message."""
        failures = {v: f for v, f in state.failed.items() if version is None or v == version}
        if failures:
            v, failure = max(failures.items())
            return f" (version {v} failed to load: {failure.message})"
        if version is None and not state.states:
            return f" (no version directory under {state.source.base_path})"
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
