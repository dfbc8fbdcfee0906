"""One typed parser for every option: SASRecConfig, TrainOptions and DataOptions fields, from
flags, ``--set`` and pipeline files alike (a seeded property test, a few seconds)."""

import dataclasses
import json
import math
import random

import pytest

from sasrec_tf.cli import build_parser
from sasrec_tf.cli.common import flag, set_flags
from sasrec_tf.cli.train import CONFIG_FLAGS
from sasrec_tf.config import OptionError, SASRecConfig, option_types, parse_option
from sasrec_tf.experiment import SECTIONS, DataOptions, Pipeline, TrainOptions, apply_overrides, load_pipeline

TRUE_TEXT, FALSE_TEXT = ("true", "True", "YES", "yes", "1"), ("false", "False", "no", "NO", "0")
_BAD = object()  # the expected outcome of a value of the wrong type: rejected


def _text_case(rng, kind, optional):
    """(text, expected value, or a ``_BAD`` marker) for a flag or ``--set``."""
    roll = rng.random()
    if optional and kind is not str and roll < 0.1:
        return rng.choice(["null", "None"]), None
    if kind is bool:
        if roll < 0.7:
            text = rng.choice(TRUE_TEXT + FALSE_TEXT)
            return text, text in TRUE_TEXT
        return rng.choice(["maybe", "2", "tru", "", "on?"]), _BAD
    if kind is int:
        if roll < 0.7:
            value = rng.randint(-5, 500)
            return rng.choice([str(value), f" {value} "]), value
        return rng.choice(["1.5", "1e3", "x", "", "3 4", "0x10"]), _BAD
    if kind is float:
        if roll < 0.5:
            value = rng.uniform(-1, 2)
            return repr(value), value
        if roll < 0.65:
            text = rng.choice(["1e-3", "3", "0"])
            return text, float(text)
        if roll < 0.8:
            text = rng.choice(["nan", "inf", "-inf", "NaN"])
            return text, float(text)
        return rng.choice(["abc", "", "1,5", "0.2.1"]), _BAD
    text = rng.choice(["pre", "csv", "ndcg@10", "uid", ";", "a b", "null"])
    return text, text


def _json_case(rng, kind, optional):
    """(JSON value, expected value or ``_BAD``) for a pipeline file's key."""
    roll = rng.random()
    if roll < 0.1:
        return None, None if optional else _BAD
    if kind is bool:
        value = rng.choice([True, False, "true", "False", 1, 0, "maybe"])
        return value, value if isinstance(value, bool) else _BAD
    if kind is int:
        value = rng.choice([rng.randint(-5, 500), "3", 1.5, True, [1]])
        return value, value if type(value) is int else _BAD
    if kind is float:
        value = rng.choice([rng.uniform(-1, 2), rng.randint(0, 3), "0.2", "1e-3", False])
        return value, float(value) if type(value) in (int, float) else _BAD
    value = rng.choice(["pre", "csv", "uid", 3, True, ["a"]])
    return value, value if isinstance(value, str) else _BAD


PARSER = build_parser()


def _flag_choices():
    """Choices of the flags that have them (argparse rejects other values before the parser)."""
    parser = PARSER._subparsers._group_actions[0].choices["train"]
    return {action.dest: action.choices for action in parser._actions if action.choices}


def _sources(section, name):
    """The sources an option can come from: every one from a pipeline file; SASRecConfig fields
    from --set and some from flags; TrainOptions and DataOptions fields from flags."""
    sources = ["json"]
    if section == "model":
        sources.append("set")
    if section != "model" or name in CONFIG_FLAGS:
        sources.append("flag")
    return sources


def _apply(source, section, name, value, tmp_path):
    """Set one option from ``source``; returns (pipeline, the source text an error must start with)."""
    if source == "json":
        path = tmp_path / "pipe.json"
        path.write_text(json.dumps({section: {name: value}}))
        return load_pipeline(path), f"{path}: {section}.{name}"
    if source == "set":
        pipeline = Pipeline()
        pipeline.apply_overrides([f"{name}={value}"])
        return pipeline, f"--set {name}={value}"
    args = PARSER.parse_args(["train", "--data", "d", "--out", "o", f"{flag(name)}={value}"])
    pipeline = Pipeline()
    set_flags(pipeline, section, args, [name])
    return pipeline, f"{flag(name)} {value}"


def test_every_option_from_every_source_is_typed_or_rejected_naming_its_source(tmp_path):
    rng = random.Random(1515)
    choices = _flag_choices()
    seen = set()
    for _ in range(600):
        section = rng.choice(list(SECTIONS))
        name = rng.choice([f.name for f in dataclasses.fields(SECTIONS[section])])
        source = rng.choice(_sources(section, name))
        kind, optional = option_types(SECTIONS[section])[name]
        value, expected = (_json_case if source == "json" else _text_case)(rng, kind, optional)
        if source == "flag" and name in choices:
            value = expected = rng.choice(list(choices[name]))
        seen.add((section, source))
        case = f"{source} {section}.{name}={value!r}"
        try:
            pipeline, where = _apply(source, section, name, value, tmp_path)
        except OptionError as err:
            if expected is not _BAD:  # a file is validated on its own: only a value out of range is refused
                assert source == "json", f"{case}: rejected a value of the right type: {err}"
                with pytest.raises(OptionError):
                    SECTIONS[section](**{name: expected})
            assert name in str(err) and "\n" not in str(err), case
            assert str(err).startswith(f"{tmp_path / 'pipe.json'}: {section}.{name}" if source == "json"
                                       else f"--set {name}=" if source == "set" else flag(name)), (case, str(err))
            continue
        assert expected is not _BAD, f"{case}: accepted {pipeline.__dict__[section][name]!r}"
        parsed = getattr(pipeline, section)[name]
        assert type(parsed) is type(expected) and (parsed == expected or math.isnan(expected)), (case, parsed)
        try:
            built = pipeline.build(section)
        except OptionError as err:  # a value of the right type out of its range: still its source named
            assert str(err).startswith(where) and name in str(err), (case, str(err))
            continue
        assert getattr(built, name) == parsed, case
        if isinstance(parsed, float):
            assert math.isfinite(parsed), f"{case}: a non-finite {name} was accepted"
    assert seen == {(s, src) for s in SECTIONS for src in ("json", "flag")} | {("model", "set")}


@pytest.mark.parametrize("text, value", [("False", False), ("false", False), ("0", False), ("no", False),
                                         ("True", True), ("yes", True)])
def test_set_booleans_are_booleans(text, value):
    assert apply_overrides({}, [f"use_residual={text}"]) == {"use_residual": value}
    assert SASRecConfig(**apply_overrides({}, [f"use_residual={text}"])).use_residual is value


@pytest.mark.parametrize("cls, name, value", [
    (SASRecConfig, "use_residual", "False"), (SASRecConfig, "dropout_rate", "0.2"), (SASRecConfig, "seed", "x"),
    (SASRecConfig, "learning_rate", "1e-3"), (SASRecConfig, "max_len", 5.0), (SASRecConfig, "epochs", True),
    (TrainOptions, "eval_every", "5"), (DataOptions, "min_rating", "4"),
])
def test_strings_and_wrong_types_are_never_taken_from_json_or_python(cls, name, value):
    with pytest.raises(OptionError, match=name):
        parse_option(cls, name, value)
    with pytest.raises(OptionError, match=name):
        cls(**{name: value})


@pytest.mark.parametrize("cls, name", [(SASRecConfig, "learning_rate"), (SASRecConfig, "l2_emb"),
                                       (SASRecConfig, "dropout_rate"), (SASRecConfig, "weight_decay"),
                                       (SASRecConfig, "gbce_t"), (TrainOptions, "max_minutes"),
                                       (DataOptions, "min_rating")])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(cls, name, value):
    with pytest.raises(OptionError, match=name):
        cls(**{name: value})
