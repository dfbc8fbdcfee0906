"""Which models and versions the local server serves: discovery on disk, version policy, labels.

Two ways to say what to serve, as with ``tensorflow_model_server``:

* ``model_base`` alone: every subdirectory ``BASE/NAME`` (not starting with ``.``) is a model,
  its numeric subdirectories are versions. The latest version is loaded eagerly; any other
  version on disk is loaded the first time a request names it (by number or label) and stays
  loaded until its directory disappears. A superseded latest version is unloaded once the new
  one is available; requests already running on it finish on it.
* ``model_config_file``: TF Serving's ``models.config`` (a text ``ModelServerConfig``) gives the
  names, base paths, version policies (``latest { num_versions }``, ``all``, ``specific
  { versions }``; versions outside the policy are NOT_FOUND, as in TF Serving) and
  ``version_labels``. With ``model_base`` as well, each model's base path becomes
  ``model_base/<name>``, so the deployment's ``serving/models.config`` (which names container
  paths) works locally unchanged. The file is re-read when it changes.

A version directory is served once it holds ``saved_model.pb`` (exports are atomic renames).
Status codes: an unknown model or version → NOT_FOUND; an unknown label → INVALID_ARGUMENT (as
TF Serving); a known model with no loadable version yet, or whose version failed to load →
FAILED_PRECONDITION.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Mapping

import grpc

from sasrec_tf.serving.errors import StatusError
from sasrec_tf.serving.servable import Servable

__all__ = ["ModelSource", "ModelManager", "read_model_config"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A model to serve: where its versions live, which to load, and its version labels.

    ``policy`` is ``"on_demand"`` (latest eagerly, others when requested), ``"latest"`` (the
    ``num_versions`` largest), ``"all"`` or ``"specific"`` (``versions``).
    """

    name: str
    base_path: Path
    policy: str = "on_demand"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def eager(self, on_disk: list[int]) -> set[int]:
        """Versions to keep loaded, given the (ascending) versions on disk."""
        if not on_disk:
            return set()
        if self.policy == "all":
            return set(on_disk)
        if self.policy == "specific":
            return set(self.versions) & set(on_disk)
        if self.policy == "latest":
            return set(on_disk[-self.num_versions:])
        return {on_disk[-1]}

    def allows(self, version: int, on_disk: list[int]) -> bool:
        """Whether a request may load ``version`` (only ``on_demand`` goes beyond :meth:`eager`)."""
        if version not in on_disk:
            return False
        return self.policy == "on_demand" or version in self.eager(on_disk)


def read_model_config(path: str | os.PathLike[str],
                      model_base: str | os.PathLike[str] | None = None) -> list[ModelSource]:
    """Parse TF Serving's ``models.config`` into sources (see the module docstring for ``model_base``)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), config)
    except text_format.ParseError as err:
        raise ValueError(f"{path}: not a ModelServerConfig text proto: {err}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{path}: expected a model_config_list")
    sources = []
    for model in config.model_config_list.config:
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{path}: model {model.name!r}: only model_platform 'tensorflow' is served")
        if model_base is not None:
            base = Path(model_base) / model.name
        else:
            base = Path(model.base_path)
            base = base if base.is_absolute() else path.parent / base
        policy = model.model_version_policy
        kind = policy.WhichOneof("policy_choice") or "latest"
        sources.append(ModelSource(
            name=model.name,
            base_path=base,
            policy=kind,
            num_versions=max(1, policy.latest.num_versions) if kind == "latest" else 1,
            versions=tuple(policy.specific.versions) if kind == "specific" else (),
            labels=dict(model.version_labels),
        ))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: model names repeat: {names}")
    return sources


def _versions_on_disk(base: Path) -> list[int]:
    try:
        entries = list(base.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(p.name) for p in entries if p.name.isdigit() and (p / "saved_model.pb").is_file())


@dataclasses.dataclass
class _ModelState:
    source: ModelSource
    loaded: dict[int, Servable] = dataclasses.field(default_factory=dict)
    failed: dict[int, str] = dataclasses.field(default_factory=dict)
    pinned: set[int] = dataclasses.field(default_factory=set)  # loaded on request: kept while on disk
    on_disk: list[int] = dataclasses.field(default_factory=list)


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
    ):
        if model_base is None and model_config_file is None:
            raise ValueError("give model_base, model_config_file, or both")
        self.model_base = Path(model_base) if model_base is not None else None
        self.model_config_file = Path(model_config_file) if model_config_file is not None else None
        self._extra_labels = {name: dict(value) for name, value in (labels or {}).items()}
        self._batching = dict(batching) if batching is not None else None
        self._models: dict[str, _ModelState] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, int], threading.Lock] = {}
        self._config_mtime: float | None = None
        self._config_sources: list[ModelSource] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- discovery
    def _sources(self) -> list[ModelSource]:
        if self.model_config_file is not None:
            mtime = self.model_config_file.stat().st_mtime
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
        return [
            dataclasses.replace(s, labels={**s.labels, **self._extra_labels[s.name]})
            if s.name in self._extra_labels else s
            for s in sources
        ]

    def poll(self) -> None:
        """Scan the disk once: load new eager versions, unload versions gone or out of policy."""
        sources = {s.name: s for s in self._sources()}
        with self._lock:
            for name in list(self._models):
                if name not in sources:
                    logger.info("model %s removed", name)
                    for servable in self._models.pop(name).loaded.values():
                        servable.close()
            for name, source in sources.items():
                state = self._models.setdefault(name, _ModelState(source))
                state.source = source
        for name, source in sources.items():
            on_disk = _versions_on_disk(source.base_path)
            with self._lock:
                state = self._models.get(name)
                if state is None:
                    continue
                state.on_disk = on_disk
                for version in [v for v in state.failed if v not in on_disk]:
                    del state.failed[version]
                state.pinned &= set(on_disk)
                to_load = [v for v in sorted(source.eager(on_disk)) if v not in state.loaded and v not in state.failed]
            for version in to_load:
                self._load(name, version)
            with self._lock:
                state = self._models.get(name)
                if state is None:
                    continue
                keep = source.eager(on_disk) | state.pinned
                if not (keep & set(state.loaded)):  # new latest not loaded: keep serving the old one
                    keep |= set(state.loaded)
                for version in [v for v in state.loaded if v not in keep]:
                    logger.info("unloading %s version %d", name, version)
                    state.loaded.pop(version).close()  # running requests keep their reference

    def _load(self, name: str, version: int) -> Servable | None:
        with self._lock:
            lock = self._load_locks.setdefault((name, version), threading.Lock())
        with lock:
            with self._lock:
                state = self._models.get(name)
                if state is None:
                    return None
                if version in state.loaded:
                    return state.loaded[version]
                if version in state.failed:
                    return None
                path = state.source.base_path / str(version)
            logger.info("loading %s version %d from %s", name, version, path)
            try:
                servable = _load_and_warm_up(name, version, path, self._batching)
            except Exception as err:  # noqa: BLE001 - any load failure is reported, not raised
                message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                logger.error("failed to load %s version %d: %s", name, version, message)
                with self._lock:
                    if name in self._models:
                        self._models[name].failed[version] = message
                return None
            with self._lock:
                state = self._models.get(name)
                if state is None:
                    return None
                state.loaded[version] = servable
            return servable

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
            except Exception:  # noqa: BLE001 - keep serving what is loaded
                logger.exception("polling the model directories failed")

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

    def _requested_version(self, name: str, version: int | None, label: str | None) -> int | None:
        """The version a spec names (None: the latest); raises for unknown labels."""
        if label:
            with self._lock:
                labels = dict(self._state(name).source.labels)
            if label not in labels:
                raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"Unrecognized servable version label: {label!r} for model {name!r} "
                                  f"(labels: {labels or 'none'})")
            return int(labels[label])
        return version

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a model spec: the latest loaded version, or the one named."""
        requested = self._requested_version(name, version, label)
        with self._lock:
            state = self._state(name)
            if requested is None:
                if state.loaded:
                    return state.loaded[max(state.loaded)]
                if state.failed:
                    version, message = max(state.failed.items())
                    raise StatusError(grpc.StatusCode.FAILED_PRECONDITION,
                                      f"model {name!r} has no loaded version: version {version} failed to "
                                      f"load: {message}")
                raise StatusError(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"model {name!r} has no loaded version yet: no version directory with a "
                                  f"saved_model.pb under {state.source.base_path}")
            if requested in state.loaded:
                return state.loaded[requested]
            if requested in state.failed:
                raise StatusError(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"model {name!r} version {requested} failed to load: {state.failed[requested]}")
            on_disk = state.on_disk
            source = state.source
        if requested not in on_disk:  # the disk may have changed since the last poll
            on_disk = _versions_on_disk(source.base_path)
        if not source.allows(requested, on_disk):
            where = "is not on disk" if requested not in on_disk else f"is outside the {source.policy} version policy"
            raise StatusError(grpc.StatusCode.NOT_FOUND,
                              f"Servable not found for request: model {name!r} version {requested} {where} "
                              f"(loaded: {sorted(state.loaded)})")
        with self._lock:
            if name in self._models:
                self._models[name].pinned.add(requested)
                self._models[name].on_disk = on_disk
        servable = self._load(name, requested)
        if servable is None:
            return self.resolve(name, requested)  # reports the failure
        return servable

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[tuple[int, str, str]]:
        """``[(version, state, error message)]``: ``AVAILABLE`` (loaded) or ``END`` (failed to load).

        Naming a version loads it if the policy allows (as a Predict would).
        """
        requested = self._requested_version(name, version, label)
        if requested is not None:
            try:
                servable = self.resolve(name, requested)
                return [(servable.version, "AVAILABLE", "")]
            except StatusError as err:
                if err.code == grpc.StatusCode.FAILED_PRECONDITION:
                    return [(requested, "END", err.message)]
                raise
        with self._lock:
            state = self._state(name)
            rows = [(v, "AVAILABLE", "") for v in state.loaded] + [(v, "END", m) for v, m in state.failed.items()]
        if not rows:
            raise StatusError(grpc.StatusCode.FAILED_PRECONDITION,
                              f"model {name!r} has no version loaded yet (base path {state.source.base_path})")
        return sorted(rows, reverse=True)


def _load_and_warm_up(name: str, version: int, path: Path, batching: Mapping[str, int] | None) -> Servable:
    servable = Servable(name, version, path, batching=batching)
    try:
        count = servable.warmup()
    except BaseException:
        servable.close()
        raise
    logger.info("loaded %s version %d (%d warmup requests)", name, version, count)
    return servable
