"""The item-features flags ``train --item-features`` and ``add-items --items`` share, and reading them;
the cold-score offset flag of ``export`` and ``add-items``.

TensorFlow-free (the parser is built from it).
"""

from __future__ import annotations

import argparse

from sasrec_tf.experiment import Pipeline


def add_cold_score_offset_flag(parser: argparse.ArgumentParser) -> None:
    """``--cold-score-offset O``: the export's cold items served ``O`` lower (``export_saved_model``'s
    ``cold_score_offset``; check it with :func:`check_cold_score_offset`)."""
    parser.add_argument("--cold-score-offset", dest="cold_score_offset", type=float, metavar="O",
                        help="serve every cold item (no trained id row: held out, or added by add-items) O lower "
                             "than its feature vector scores: the exposure knob for new items, chosen on the "
                             "cold-start protocol's validation table (default: the model's "
                             "feature_cold_score_offset, 0 unless trained with one)")


def check_cold_score_offset(flag: str, *values: float | None) -> None:
    """A usage error naming ``flag`` for a negative or non-finite value (None: not given)."""
    from sasrec_tf.cli.common import UsageError
    from sasrec_tf.ranking.rules import check_cold_score_offset as check

    for value in values:
        if value is not None:
            try:
                check(value, flag)
            except ValueError as err:
                raise UsageError(str(err)) from None


def add_item_features_flags(parser: argparse.ArgumentParser, flag: str = "--item-features", *,
                            required: bool = False, help: str = "") -> None:
    """The item-features file (``flag``) and how to read it (see :func:`read_item_features_flags`)."""
    from sasrec_tf.data.item_features import FEATURE_FORMATS

    parser.add_argument(flag, dest="item_features", metavar="PATH", required=required, help=help)
    parser.add_argument("--features-format", dest="features_format", choices=FEATURE_FORMATS,
                        help="how to read the item features: S3-Rec's JSON (item -> attribute ids) or a table "
                             "(default: from the file's suffix)")
    parser.add_argument("--features-item-col", dest="features_item_col", metavar="NAME",
                        help="a feature table's item id column (default: item); every other column is a feature")
    parser.add_argument("--features-multi-sep", dest="features_multi_sep", metavar="SEP",
                        help="separates several values in one cell of a feature table (default: |)")


def read_item_features_flags(args: argparse.Namespace, pipeline: Pipeline | None = None):
    """The :class:`~sasrec_tf.data.item_features.ItemFeatures` of the flags, or of the pipeline
    file's ``item_features`` (flags win); None when neither names a file."""
    from sasrec_tf.data.item_features import read_item_features

    given = dict(getattr(pipeline, "item_features", None) or {})
    for key, name in (("path", "item_features"), ("format", "features_format"),
                      ("item_column", "features_item_col"), ("multi_value_sep", "features_multi_sep")):
        if getattr(args, name, None) is not None:
            given[key] = getattr(args, name)
    if given.get("path") is None:
        return None
    options = {k: v for k, v in given.items() if k != "path"}
    return read_item_features(given["path"], **options)
