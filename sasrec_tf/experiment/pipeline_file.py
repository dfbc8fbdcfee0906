"""Pipeline files (``pipelines/*.json``) and the one typed parser of option values.

A pipeline file has three sections, each a typed dataclass that rejects unknown keys:

* ``model`` -- :class:`~sasrec_tf.SASRecConfig` fields;
* ``data`` -- :class:`~sasrec_tf.experiment.DataOptions`: how to read and filter the log;
* ``train`` -- :class:`~sasrec_tf.experiment.TrainOptions`: validation cadence, early stopping,
  limits, evaluation.

and optionally ``item_features``: a feature file's path, or ``{"path", "format", "item_column",
"multi_value_sep"}`` (:func:`sasrec_tf.data.item_features.read_item_features`).

The file, command-line flags and ``--set NAME=VALUE`` all set options through
:meth:`PipelineFile.set` (:func:`sasrec_tf.config.parse_option`): JSON values must have the
field's type, flag and ``--set`` text is parsed by it, and an error names the value's source.
(Not to be confused with :mod:`sasrec_tf.data.pipeline`, the tf.data input pipeline.)
TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from sasrec_tf.config import OptionError, parse_option
from sasrec_tf.run_options import SECTIONS

__all__ = ["PIPELINE_SECTIONS", "Pipeline", "PipelineFile", "apply_overrides", "load_pipeline"]

PIPELINE_SECTIONS = ("model", "data", "train")


@dataclasses.dataclass
class PipelineFile:
    """The options of a run by section (``model``, ``data``, ``train``; see
    :data:`~sasrec_tf.experiment.SECTIONS`), as typed values, and where each came from.

    A pipeline file, flags and ``--set`` all go through :meth:`set`, the one parser of option
    values (:func:`sasrec_tf.config.parse_option`); :meth:`build` then makes the section's
    dataclass, and a value it rejects is reported with its source (``--eval-every 0: ...``,
    ``pipe.json: train.eval_every: ...``).
    """

    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    item_features: dict[str, Any] | None = None  # read_item_features' path and options
    sources: dict[str, str] = dataclasses.field(default_factory=dict)  # "section.name" -> where it was set

    def set(self, section: str, name: str, value: Any, source: str, *, text: bool = False) -> None:
        """Set one option; ``text`` for a value still to be parsed (a flag, ``--set``), else a
        JSON or Python value that must already have the option's type.

        Raises:
          OptionError: an unknown option or a value of the wrong type, naming ``source``.
        """
        try:
            getattr(self, section)[name] = parse_option(SECTIONS[section], name, value, text=text)
        except OptionError as err:
            raise err.at(source) from None
        self.sources[f"{section}.{name}"] = source

    def apply_overrides(self, assignments: Iterable[str]) -> None:
        """``--set NAME=VALUE`` for SASRecConfig fields."""
        for assignment in assignments:
            if "=" not in assignment:
                raise OptionError("", f"--set expects NAME=VALUE, got {assignment!r}")
            name, value = assignment.split("=", 1)
            self.set("model", name.strip(), value, f"--set {assignment}", text=True)

    def build(self, section: str):
        """The section's dataclass (``SASRecConfig``, ``DataOptions`` or ``TrainOptions``).

        Raises:
          OptionError: a value the dataclass rejects, naming where it was set.
        """
        try:
            return SECTIONS[section](**getattr(self, section))
        except OptionError as err:
            source = self.sources.get(f"{section}.{err.option}")
            raise (err.at(source) if source else err) from None


Pipeline = PipelineFile  # the old name


def load_pipeline(path: str | Path | None) -> PipelineFile:
    """Read a pipeline file (JSON with ``model``, ``data`` and ``train`` sections); ``None`` gives
    the defaults.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a JSON object of known sections, or an invalid value (naming the file and key).
    """
    if path is None:
        return PipelineFile()
    if Path(path).is_dir():
        raise ValueError(f"config file {path} is a directory; expected a pipeline file (JSON)")
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; expected a pipeline file (JSON)") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply; a pipeline file has three flat sections "
                         f"{list(PIPELINE_SECTIONS)}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object with sections {list(PIPELINE_SECTIONS)}")
    unknown = sorted(set(raw) - set(PIPELINE_SECTIONS) - {"description", "item_features"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; expected {list(PIPELINE_SECTIONS)}")
    pipeline = PipelineFile(description=str(raw.get("description", "")),
                            item_features=_item_features_entry(path, raw.get("item_features")))
    for section in PIPELINE_SECTIONS:
        values = raw.get(section, {})
        if not isinstance(values, dict):
            raise ValueError(f"{path}: section {section!r} must be a JSON object, got {values!r}")
        for name, value in values.items():
            pipeline.set(section, name, value, f"{path}: {section}.{name}")
        pipeline.build(section)  # a file must be valid on its own, whatever flags later override
    return pipeline


_FEATURE_KEYS = ("path", "format", "item_column", "multi_value_sep")


def _item_features_entry(path, value) -> dict[str, Any] | None:
    """A pipeline file's ``item_features``: a path, or an object of :data:`_FEATURE_KEYS` (strings)."""
    if value is None:
        return None
    entry = {"path": value} if isinstance(value, str) else value
    if (not isinstance(entry, dict) or set(entry) - set(_FEATURE_KEYS) or "path" not in entry
            or not all(isinstance(v, str) for v in entry.values())):
        raise ValueError(f"{path}: item_features must be a path or an object with a 'path' and optionally "
                         f"{list(_FEATURE_KEYS[1:])}, all strings; got {value!r}")
    return dict(entry)


def apply_overrides(values: Mapping[str, Any], assignments: Iterable[str] = ()) -> dict[str, Any]:
    """``values`` (SASRecConfig fields) updated by ``NAME=VALUE`` assignments (``--set``), each
    value parsed by its field's type."""
    pipeline = PipelineFile(model=dict(values))
    pipeline.apply_overrides(assignments)
    return pipeline.model
