"""The item-features flags ``train --item-features`` and ``add-items --items`` share, and reading them.

TensorFlow-free (the parser is built from it).
"""

from __future__ import annotations

import argparse

from sasrec_tf.experiment import Pipeline


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
