"""``sasrec-tf shard``: an interaction log as sharded TFRecord sequence files for training at scale."""

from __future__ import annotations

import argparse

from sasrec_tf.cli.common import add_data_flags, default_of, read_data


def register(subcommands) -> None:
    from sasrec_tf.data.tfrecord.writer import write_shards  # its default; no TensorFlow once sasrec_tf.data has none

    parser = subcommands.add_parser(
        "shard", help="convert an interaction log into sharded TFRecord sequence files for training at scale")
    add_data_flags(parser)
    parser.add_argument("--out", required=True, help="output directory (shards, manifest.json, vocab.txt)")
    parser.add_argument("--num-shards", dest="num_shards", type=int, default=default_of(write_shards, "num_shards"),
                        help="number of files; use a multiple of the number of training workers")
    parser.add_argument("--compression", choices=("none", "gzip", "zlib"), default="none")
    parser.add_argument("--overwrite", action="store_true", help="replace the shards in an existing directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.data.tfrecord.writer import write_shards

    data = read_data(args)
    manifest = write_shards(data, args.out, args.num_shards,
                            compression=None if args.compression == "none" else args.compression,
                            overwrite=args.overwrite)
    total = sum(shard["bytes"] for shard in manifest["shards"])
    print(f"wrote {len(manifest['shards'])} shards to {args.out}: {manifest['num_users']} users, "
          f"{manifest['num_items']} items, {manifest['num_interactions']} interactions, "
          f"{total / 2**20:.2f} MiB ({total / max(manifest['num_interactions'], 1):.2f} bytes/interaction)")
    return 0
