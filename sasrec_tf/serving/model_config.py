"""TF Serving's ``models.config`` and the model sources it describes (names, base paths, version
policies, labels), for :class:`~sasrec_tf.serving.manager.ModelManager`; the rules are in
:mod:`sasrec_tf.serving.manager`.

The file is parsed as the ``ModelServerConfig`` text proto it is (``tensorflow_serving.config``),
so an unknown field is refused as ``tensorflow_model_server`` refuses it, and the checks of
``server_core.cc`` apply: model names are unique, every ``base_path`` is absolute
(``ValidateModelConfigList``, ~130-150) and every model names its ``model_platform``
(``GetPlatform``, ~78-105; only ``tensorflow`` is served here). With ``model_base`` (the stand-in's
own option) each base path is replaced by ``model_base/<name>``, relative or not.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping

__all__ = ["ModelSource", "read_model_config"]


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A model to serve: where its versions live, which to load (TF Serving's version policy), its labels.

    ``policy`` is ``"latest"`` (the ``num_versions`` largest; TF Serving's default), ``"all"``, or
    ``"specific"`` (``versions``).
    """

    name: str
    base_path: Path
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def wanted(self, on_disk: list[int]) -> set[int]:
        """The versions the policy wants loaded, given the (ascending) versions on disk."""
        if self.policy == "all":
            return set(on_disk)
        if self.policy == "specific":
            return set(self.versions) & set(on_disk)
        return set(on_disk[-self.num_versions:]) if on_disk else set()


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
        if not model.model_platform and not model.model_type:
            raise ValueError(f"{path}: Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                             f"ModelServerConfig::model_platform, model name is {model.name}: add "
                             f"model_platform: \"tensorflow\"")
        if (model.model_platform or "tensorflow") != "tensorflow":
            raise ValueError(f"{path}: model {model.name!r}: only model_platform 'tensorflow' is served")
        if model_base is not None:
            base = Path(model_base) / model.name
        else:
            base = Path(model.base_path)
            if not base.is_absolute():
                raise ValueError(f"{path}: Expected model {model.name} to have an absolute path or URI; got "
                                 f"base_path()={model.base_path}")
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
