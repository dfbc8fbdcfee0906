"""The search space of ``sasrec-tf tune``: a JSON file of ranges and choices over configuration
fields, each checked by the same typed parser as ``--set`` (TensorFlow- and Optuna-free).

The file has a ``model`` section (:class:`~sasrec_tf.SASRecConfig` fields) and optionally a
``train`` section (:class:`~sasrec_tf.experiment.TrainOptions` fields), each mapping a field to
one of::

    {"choices": [32, 64]}                              any field: one of these values
    {"low": 1, "high": 3}                              an int field: an integer in [low, high]
    {"low": 0.1, "high": 0.5, "step": 0.1}             a float field: a multiple of step from low
    {"low": 1e-4, "high": 1e-2, "log": true}           sampled uniformly in log space

For example::

    {"model": {"hidden_units": {"choices": [32, 64]},
               "learning_rate": {"low": 0.0003, "high": 0.003, "log": true},
               "dropout_rate": {"low": 0.2, "high": 0.5}},
     "train": {"smoothing": {"choices": [1, 2]}}}

An unknown field, a value of the wrong type, a range on a field that is not a number, or a value
the configuration rejects (checked with the rest of the run's configuration) is one line naming the
file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping

from sasrec_tf.config import OptionError, option_types, parse_option
from sasrec_tf.run_options import SECTIONS

__all__ = ["Param", "SearchSpace", "TUNABLE_SECTIONS", "load_space"]

# What a space may search: the model and how it trains (not how the log is read: one log per study).
TUNABLE_SECTIONS = ("model", "train")
_KEYS = {"choices", "low", "high", "log", "step"}


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched field: ``choices``, or a range ``[low, high]`` (``log``: in log space;
    ``step``: on a grid from ``low``)."""

    section: str
    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    def suggest(self, trial) -> Any:
        """This field's value for an Optuna ``trial`` (``trial.suggest_*``)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if option_types(SECTIONS[self.section])[self.name][0] is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def values_to_check(self) -> tuple[Any, ...]:
        """Values every one of which the configuration must accept: the choices, or both ends."""
        return self.choices if self.choices is not None else (self.low, self.high)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The searched fields, in the file's order."""

    params: tuple[Param, ...]
    source: str = "search space"

    def suggest(self, trial) -> dict[str, dict[str, Any]]:
        """``{section: {field: value}}`` for an Optuna ``trial``."""
        values: dict[str, dict[str, Any]] = {section: {} for section in TUNABLE_SECTIONS}
        for param in self.params:
            values[param.section][param.name] = param.suggest(trial)
        return values

    def sections_of(self, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Optuna's flat ``{field: value}`` (a trial's ``params``) back into sections."""
        values: dict[str, dict[str, Any]] = {section: {} for section in TUNABLE_SECTIONS}
        for param in self.params:
            if param.name in params:
                values[param.section][param.name] = params[param.name]
        return values

    def check(self, pipeline) -> None:
        """Every choice and both ends of every range must be accepted by the configuration on top
        of ``pipeline`` (a :class:`~sasrec_tf.experiment.PipelineFile`): one line naming the key."""
        for param in self.params:
            for value in param.values_to_check():
                trial = dataclasses.replace(pipeline, **{s: dict(getattr(pipeline, s)) for s in TUNABLE_SECTIONS},
                                            sources=dict(pipeline.sources))
                trial.set(param.section, param.name, value, f"{self.source}: {param.section}.{param.name}")
                trial.build(param.section)


def _number(section: str, name: str, key: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(name, f"{where}: {key} must be a finite number, got {value!r}")
    try:
        return parse_option(SECTIONS[section], name, value)
    except OptionError as err:
        raise err.at(where) from None


def _param(section: str, name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict) or not spec or set(spec) - _KEYS:
        raise OptionError(name, f"{where}: expected {{\"choices\": [...]}} or {{\"low\": .., \"high\": .., "
                                f"\"log\": false, \"step\": null}}, got {spec!r}")
    kind, _ = option_types(SECTIONS[section])[name]
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise OptionError(name, f"{where}: choices take no low, high, log or step")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise OptionError(name, f"{where}: choices must be a non-empty list, got {choices!r}")
        try:
            parsed = tuple(parse_option(SECTIONS[section], name, value) for value in choices)
        except OptionError as err:
            raise err.at(where) from None
        return Param(section, name, choices=parsed)
    if kind not in (int, float):
        raise OptionError(name, f"{where}: a range needs a number field; {SECTIONS[section].__name__}.{name} is "
                                f"{kind.__name__}: use choices")
    if not {"low", "high"} <= set(spec):
        raise OptionError(name, f"{where}: a range needs both low and high")
    low, high = (_number(section, name, key, spec[key], where) for key in ("low", "high"))
    log = spec.get("log", False)
    step = spec.get("step")
    if not isinstance(log, bool):
        raise OptionError(name, f"{where}: log must be true or false, got {log!r}")
    if step is not None:
        step = _number(section, name, "step", step, where)
        if step <= 0 or log:
            raise OptionError(name, f"{where}: step must be > 0 and cannot be combined with log")
    if not low < high:
        raise OptionError(name, f"{where}: low must be below high, got {low!r} and {high!r}")
    if log and low <= 0:
        raise OptionError(name, f"{where}: a log range needs low > 0, got {low!r}")
    return Param(section, name, low=low, high=high, log=log, step=step)


def load_space(path: str | Path) -> SearchSpace:
    """Read a search-space file (see the module's docstring).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not such a file, or an unknown field or bad range (one line naming the key).
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"search space not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON search space ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object with sections {list(TUNABLE_SECTIONS)}")
    unknown = sorted(set(raw) - set(TUNABLE_SECTIONS) - {"description"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; a search space has {list(TUNABLE_SECTIONS)}")
    params: list[Param] = []
    for section in TUNABLE_SECTIONS:
        fields = raw.get(section, {})
        if not isinstance(fields, dict):
            raise ValueError(f"{path}: section {section!r} must be a JSON object, got {fields!r}")
        for name, spec in fields.items():
            where = f"{path}: {section}.{name}"
            if name not in option_types(SECTIONS[section]):
                raise OptionError(name, f"{where}: unknown {SECTIONS[section].__name__} field {name!r}")
            if any(p.name == name for p in params):
                raise OptionError(name, f"{where}: {name!r} is searched twice")
            params.append(_param(section, name, spec, where))
    if not params:
        raise ValueError(f"{path}: the search space names no field to search")
    return SearchSpace(tuple(params), source=str(path))
