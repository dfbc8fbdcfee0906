"""What the subcommands share: the usage error, ``-v``, help that shows defaults, typed option flags,
data and training flags, tables, quiet start-up.

Nothing here, and nothing a subcommand's ``register`` calls, imports TensorFlow: help, argument
errors and ``sasrec-tf info`` answer without it (``tests/test_cli_imports.py``). Library code that
needs TensorFlow is imported inside each subcommand's ``run``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.abc
import importlib.util
import inspect
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from sasrec_tf.card import CARD_FILE
from sasrec_tf.choices import PROTOCOLS, TARGET_GROUPS
from sasrec_tf.config import REPEATED_TARGETS, SASRecConfig, option_types
from sasrec_tf.experiment import MONITORS, DataOptions, Pipeline, TrainOptions
from sasrec_tf.files import atomic_write_json


class UsageError(Exception):
    """A problem with the command line or a config file (exit code 2, one line)."""


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """While active, the first import of TensorFlow, wherever it happens, runs without its C++
    start-up lines (CUDA probing, absl, oneDNN), and TensorFlow's C++ logging stays at fatal errors
    (a ``TF_CPP_MIN_LOG_LEVEL`` the user set is respected).

    TensorFlow is not imported here: a command that never needs it (help, an argument error,
    ``info``) never pays for it.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if "tensorflow" in sys.modules:
        yield
        return
    finder = _QuietTensorFlowFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, with a loader that runs it silenced; then leaves."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilencedLoader(spec.loader)
        return spec


class _SilencedLoader(importlib.abc.Loader):
    """Runs a module's loader with file descriptor 2 silenced (TensorFlow's C++ writes there), then
    imports tf_keras the same way (the Keras the library uses), and hands the module its own loader."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        with _stderr_silenced():
            self._loader.exec_module(module)
            import tf_keras  # noqa: F401


@contextlib.contextmanager
def _stderr_silenced():
    """Point file descriptor 2 at /dev/null (C++ code writes there directly), then restore it."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ------------------------------------------------------------------------------------ help
def add_verbose_flag(parser: argparse.ArgumentParser, default: Any) -> None:
    """``-v/--verbose``; the subcommands' copy has ``argparse.SUPPRESS`` as default, so a ``-v``
    given before the subcommand is not reset by the subcommand's parser."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log progress details and TensorFlow's own messages; tracebacks on errors")


class _ShowsDefaults(argparse.HelpFormatter):
    """argparse's ``ArgumentDefaultsHelpFormatter``, but silent where a default says nothing (None,
    False, an empty list) or the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        default = action.default
        if "default" in help.lower() or not _says_something(action):
            return help
        return help + " (default: %(default)s)" if help else "default: %(default)s"

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and _says_something(action):  # argparse prints no help line at all
            action.help = "default: %(default)s"
        return super()._format_action(action)


def _says_something(action: argparse.Action) -> bool:
    """Whether a flag's default is worth showing: not for switches (``store_true``), positionals, None."""
    default = action.default
    return bool(action.option_strings) and action.nargs != 0 and not (
        default is None or default == [] or default is argparse.SUPPRESS)


class DefaultsHelpFormatter(_ShowsDefaults):
    """Help that shows every flag's default."""


def with_defaults(formatter: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``formatter`` (e.g. ``RawDescriptionHelpFormatter``) that also shows every flag's default."""
    if issubclass(formatter, _ShowsDefaults):
        return formatter
    return type(f"Defaults{formatter.__name__}", (_ShowsDefaults, formatter), {})


def show_default(help: str | None, value: Any) -> str | None:
    """``help`` with ``(default: value)`` appended, unless it says its default already or there is
    none to say (``None``). A flag whose argparse default is ``None`` ("not given": the library
    decides) shows the library's value this way."""
    if value is None or (help and "default" in help.lower()):
        return help
    return f"{help} (default: {value})" if help else f"default: {value}"


# ------------------------------------------------------------------------------------ options
# Flags take text; the typed parser (Pipeline.set, as for --set and pipeline files) reads it, so a
# bad value is one line naming the flag ("--eval-every 0: TrainOptions.eval_every must be ...").
def flag(name: str) -> str:
    """The command-line flag of option ``name``: ``user_col`` -> ``--user-col``."""
    return "--" + name.replace("_", "-")


def default_of(owner: Any, name: str) -> Any:
    """The library's default of ``name``: a field of the dataclass ``owner`` or a parameter of the
    function ``owner``. Flags show it in their help and take it as their default, so it is
    written once, where the library uses it."""
    if dataclasses.is_dataclass(owner):
        field = {f.name: f for f in dataclasses.fields(owner)}[name]
        return field.default_factory() if field.default is dataclasses.MISSING else field.default
    return inspect.signature(owner).parameters[name].default


def add_option_flag(parser: argparse.ArgumentParser, cls: type, name: str, *, shown_default: Any = None,
                    **kwargs) -> None:
    """A flag for the field ``name`` of the options dataclass ``cls``, with its type as metavar and
    its default in the help (``shown_default``, else the field's default when it is not None).

    The flag's own default is None (not given), so a pipeline file's value is not overridden."""
    kind, _ = option_types(cls)[name]
    if "choices" not in kwargs:  # argparse shows the choices themselves
        kwargs.setdefault("metavar", {bool: "BOOL", int: "INT", float: "NUMBER", str: "TEXT"}[kind])
    shown = default_of(cls, name) if shown_default is None else shown_default
    kwargs["help"] = show_default(kwargs.get("help"), shown)
    parser.add_argument(flag(name), dest=name, default=None, **kwargs)


def set_flags(pipeline: Pipeline, section: str, args: argparse.Namespace, names: Sequence[str]) -> None:
    """The flags among ``names`` that were given, set in ``pipeline``'s ``section``."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            pipeline.set(section, name, value, f"{flag(name)} {value}", text=True)


# ------------------------------------------------------------------------------------ data
# Every DataOptions field has a flag of the same name (added below).
_DATA_FLAGS = tuple(field.name for field in dataclasses.fields(DataOptions))


def add_data_flags(parser: argparse.ArgumentParser, required_format: bool = False, from_model: bool = False) -> None:
    """``--data``, ``--format`` and the reading/filtering options of :class:`DataOptions`;
    ``from_model``: a command on a trained model, whose options default to the run's
    (:func:`read_model_data`)."""
    from sasrec_tf.data.ingest import DUPLICATE_POLICIES, FORMATS, filter_interactions, read_interactions

    def reader(name):
        return default_of(read_interactions, name)

    parser.add_argument("--data", required=True, help="interaction log: file path")
    add_option_flag(parser, DataOptions, "format", choices=FORMATS, required=required_format,
                    help="how to read --data: csv/tsv/parquet with a header naming the columns (below), the "
                         "SASRec paper's 'user item' lines, S3-Rec's 'user item item ...' lines, or MovieLens"
                         + (" (default: as the model's training run read its log, recorded in its "
                            f"{DATA_OPTIONS_FILE}; else guessed" if from_model else " (default: guessed")
                         + " from the name or content of --data where unambiguous: .csv, .tsv, .parquet, "
                           "u.data, ratings.dat, a .txt of 'user item' lines)")
    add_option_flag(parser, DataOptions, "user_col", help="user id column (csv, tsv, parquet)",
                    shown_default=reader("user_col"))
    add_option_flag(parser, DataOptions, "item_col", help="item id column (csv, tsv, parquet)",
                    shown_default=reader("item_col"))
    add_option_flag(parser, DataOptions, "time_col", help="timestamp column: numbers or dates (csv, tsv, parquet)",
                    shown_default=reader("time_col"))
    add_option_flag(parser, DataOptions, "rating_col", help="rating column (default: 'rating' if there is one)")
    add_option_flag(parser, DataOptions, "min_rating",
                    help="keep interactions rated at least this (implicit feedback; default: keep all)")
    add_option_flag(parser, DataOptions, "sep", help="field separator (default: ',' for csv, tab for tsv)")
    add_option_flag(parser, DataOptions, "min_user_interactions", help="drop users with fewer (k-core filter)",
                    shown_default=default_of(filter_interactions, "min_user_interactions"))
    add_option_flag(parser, DataOptions, "min_item_interactions", help="drop items with fewer (k-core filter)",
                    shown_default=default_of(filter_interactions, "min_item_interactions"))
    add_option_flag(parser, DataOptions, "duplicates", choices=DUPLICATE_POLICIES,
                    help="a repeated (user, item) pair: keep all, or only the first or last",
                    shown_default=default_of(filter_interactions, "duplicates"))


def data_options(args: argparse.Namespace, pipeline: Pipeline | None = None) -> DataOptions:
    """The ``data`` options of ``pipeline`` (a pipeline file's) with the flags that were given."""
    pipeline = pipeline or Pipeline()
    set_flags(pipeline, "data", args, _DATA_FLAGS)
    return pipeline.build("data")


def read_data(args: argparse.Namespace, pipeline: Pipeline | None = None, vocab=None, *, grow: bool = False):
    """The log named by ``--data``, read with :func:`data_options` (a format given nowhere is guessed
    where unambiguous: :func:`guess_missing_format`), its steps shown (:class:`~sasrec_tf.cli.progress.Steps`).
    A data error's hints name the flags (``--user-col``) where the library names its arguments
    (``user_col=``)."""
    from sasrec_tf.cli.progress import Steps
    from sasrec_tf.data.errors import DataError
    from sasrec_tf.data.sequences import LOAD_STEPS

    pipeline = pipeline or Pipeline()
    guess_missing_format(args, pipeline)
    options = data_options(args, pipeline)
    progress = Steps(f"loading {args.data}", len(LOAD_STEPS), names=LOAD_STEPS)
    try:
        return options.read(args.data, vocab=vocab, grow=grow, progress=progress)
    except DataError as err:
        raise DataError(_flag_names(err.reason), path=err.path, line=err.line) from None


# ------------------------------------------------------------------------------------ the run's data options
# `sasrec-tf train` records how it read its log beside the model, so the commands that take a model
# (evaluate, recommend, attention-plot) read a log the same way without --format and column flags.
DATA_OPTIONS_FILE = "data_options.json"


def record_data_options(out_dir: str | Path, args: argparse.Namespace, pipeline: Pipeline) -> Path:
    """Write ``OUT/data_options.json``: the log ``--data`` and the :class:`DataOptions` it was read with."""
    options = {k: v for k, v in dataclasses.asdict(data_options(args, pipeline)).items() if v is not None}
    path = Path(out_dir) / DATA_OPTIONS_FILE
    write_json(path, {"data": str(Path(args.data).absolute()), "options": options})
    return path


def read_model_data(args: argparse.Namespace, model_dir: str | Path, vocab):
    """:func:`read_data` for a command on a trained model: the options not given as flags are those
    the run recorded (``data_options.json``); without a record, a ``--format`` not given is guessed
    from the log's name or content where that is unambiguous (one line says so), else refused."""
    pipeline = Pipeline()
    recorded, options = _recorded_data_options(Path(model_dir))
    taken = {}
    if recorded is not None:
        for name, value in options.items():
            if getattr(args, name, None) is None:
                pipeline.set("data", name, value, f"{recorded}: {name}")
                taken[name] = value
        if taken:
            print(f"reading --data as the run did ({recorded}): "
                  + ", ".join(f"{flag(k)} {v}" for k, v in taken.items()), flush=True)
    if args.format is None and "format" not in taken:
        guess_missing_format(args, pipeline, f"{model_dir} records no data format (no {DATA_OPTIONS_FILE}: not "
                                             "trained by this version of `sasrec-tf train`)")
    return read_data(args, pipeline, vocab=vocab)


def _recorded_data_options(model_dir: Path) -> tuple[Path | None, dict[str, Any]]:
    """Where the run recorded its data options and what they are: ``data_options.json``, or a
    card's ``data.options`` (should the card record them one day); ``(None, {})`` if nowhere."""
    recorded = model_dir / DATA_OPTIONS_FILE
    try:
        if recorded.is_file():
            return recorded, dict(json.loads(recorded.read_text(encoding="utf-8"))["options"])
        card = model_dir / CARD_FILE
        data = json.loads(card.read_text(encoding="utf-8")).get("data") if card.is_file() else None
        if isinstance(data, dict) and isinstance(data.get("options"), dict):
            return card, dict(data["options"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{recorded} is unreadable: pass --format (and the column flags) yourself") from None
    return None, {}


def guess_missing_format(args: argparse.Namespace, pipeline: Pipeline, why_missing: str = "") -> None:
    """Set ``data.format`` in ``pipeline`` when neither it nor ``--format`` gives one, from the name or
    content of ``--data`` where that is unambiguous (one line says so).

    Raises:
      UsageError: the format cannot be told (naming ``why_missing`` and why not).
    """
    if args.format is not None or pipeline.data.get("format") is not None:
        return
    guessed, why = guess_format(args.data)
    if guessed is None:
        raise UsageError(f"--format is required: {why_missing + ' and ' if why_missing else ''}{why}")
    print(f"reading --data {args.data} as --format {guessed} ({why}; --format to choose another)", flush=True)
    pipeline.set("data", "format", guessed, f"--format guessed from {args.data}")


def guess_format(path: str | Path) -> tuple[str | None, str]:
    """The format of the log at ``path`` where its name or content leaves no doubt, and why
    (``None`` and why not otherwise)."""
    path = Path(path)
    name = path.name.lower()
    if name in ("u.data", "ratings.dat"):
        return "movielens", f"{path.name} is a MovieLens file name"
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".parquet"):
        return suffix[1:], f"its name ends in {suffix}"
    if path.is_dir():
        return "parquet", "it is a directory (a Parquet dataset)"
    if not path.exists():
        return None, f"{path} does not exist"
    if suffix == ".txt" and path.is_file():
        widths = set()
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.strip():
                    widths.add(min(len(line.split()), 3))
        if widths == {2}:  # S3-Rec's reader gives the same sequences for such a file
            return "sasrec", "every line is 'user item'"
        if widths == {2, 3} or widths == {3}:
            return "s3rec", "its lines are 'user item item ...'"
    return None, f"the name of {path.name} does not tell it: pass --format"


_ARGUMENT = re.compile(r"\b(" + "|".join(_DATA_FLAGS) + r")=(\S?)")


def _flag_names(message: str) -> str:
    """``user_col=`` -> ``--user-col``, ``sep=';'`` -> ``--sep ';'`` in a data error's message."""
    def replace(match: re.Match) -> str:
        value = match.group(2)
        return flag(match.group(1)) + (" " + value if value and value not in ",.;)" else value)

    return _ARGUMENT.sub(replace, message)


# ------------------------------------------------------------------------------------ training
# Every TrainOptions field has a flag of the same name (added below).
_TRAIN_FLAGS = tuple(field.name for field in dataclasses.fields(TrainOptions))


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """The :class:`TrainOptions` flags and ``--set`` for any SASRecConfig field."""
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any SASRecConfig field, e.g. --set loss=full_softmax, --set use_residual=false")
    add_option_flag(parser, TrainOptions, "eval_every", help="validate every N epochs")
    add_option_flag(parser, TrainOptions, "patience", help="early stopping after N evaluations without improvement (default: no early stopping)")
    add_option_flag(parser, TrainOptions, "monitor", choices=MONITORS,
                    help="validation metric for early stopping and the best epoch "
                         f"(default: {default_of(TrainOptions, 'monitor')})")
    add_option_flag(parser, TrainOptions, "max_eval_users", help="validate on a seeded sample of this many users (default: all)")
    add_option_flag(parser, TrainOptions, "max_minutes", help="stop training after this many minutes of wall time (default: no limit)")
    add_option_flag(parser, TrainOptions, "eval_negatives",
                    help="negatives per test item in the sampled protocol (default: the paper's "
                         f"{default_of(TrainOptions, 'eval_negatives')}; each evaluated user needs that many "
                         "items they never interacted with)")
    add_repeated_targets_flag(parser)
    add_option_flag(parser, TrainOptions, "cold_items", metavar="FRACTION",
                    help="the cold-start protocol: hold this fraction of the items out of training (and of the "
                         "evaluation histories), keep them as targets, and report full ranking on cold and warm "
                         "targets apart (default: 0, train on every item)")
    add_option_flag(parser, TrainOptions, "cold_seed", help="seed of the items --cold-items holds out")


def add_repeated_targets_flag(parser: argparse.ArgumentParser) -> None:
    add_option_flag(parser, TrainOptions, "repeated_targets", choices=REPEATED_TARGETS,
                    help="full ranking: a target already in the user's history counts as a miss (the served "
                         "model excludes history), is dropped (RecTools) or is ranked (default: "
                         f"{default_of(TrainOptions, 'repeated_targets')})")


def train_options(args: argparse.Namespace, pipeline: Pipeline) -> TrainOptions:
    """The ``train`` options of ``pipeline`` with the flags that were given."""
    set_flags(pipeline, "train", args, _TRAIN_FLAGS)
    return pipeline.build("train")


# ------------------------------------------------------------------------------------ output
def format_config(config: SASRecConfig, where: str) -> str:
    """The fields of ``config`` that differ from ``SASRecConfig()`` (the reference code's defaults),
    one aligned ``name = value`` line each; ``where`` names the file that holds all of them."""
    defaults = SASRecConfig().to_dict()
    changed = {k: v for k, v in config.to_dict().items() if v != defaults.get(k)}
    if not changed:
        return f"config: SASRecConfig's defaults (the reference code's); all of it in {where}"
    width = max(map(len, changed))
    lines = [f"config: {len(changed)} field(s) differ from SASRecConfig's defaults; all of it in {where}"]
    lines += [f"  {name:<{width}} = {_shown(value)}  (default {_shown(defaults.get(name))})"
              for name, value in sorted(changed.items())]
    return "\n".join(lines)


def _shown(value: Any) -> str:
    """A value as a pipeline file or ``--set`` writes it: ``true``, ``null``, ``1e-07``, ``bce``."""
    return value if isinstance(value, str) else json.dumps(value)


def format_table(rows: Sequence[tuple[str, dict[str, dict[str, float]]]]) -> str:
    """HR@10, NDCG@10 and MRR under both protocols, one line per named result; a result with
    cold and warm targets (the cold-start protocol) adds a full-ranking line for each group, a
    value not measured shows ``-``."""
    keys = ("hr@10", "ndcg@10", "mrr")
    header = f"{'':<28}" + "".join(f"{p + ' ' + k:>16}" for p in PROTOCOLS for k in keys)
    lines = [header]
    for name, result in rows:
        for label, values in _with_target_groups(name, result):
            cells = [values.get(p, {}).get(k) for p in PROTOCOLS for k in keys]
            lines.append(f"{label:<28}" + "".join(f"{v:>16.4f}" if v is not None else f"{'-':>16}" for v in cells))
    return "\n".join(lines)


def _with_target_groups(name: str, result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, result)``, then ``("  cold (N targets)", {"full": ...})`` per target group it has."""
    rows = [(name, result)]
    for group in TARGET_GROUPS:
        if group in result:
            rows.append((f"  {group} ({result[group]['targets']} targets)", {"full": result[group]}))
    return rows


def write_json(path: str | Path, value: Any) -> None:
    """``value`` as JSON at ``path`` (a reader sees the old file or the whole new one)."""
    atomic_write_json(path, value)
