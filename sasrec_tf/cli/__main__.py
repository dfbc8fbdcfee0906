"""``python -m sasrec_tf.cli``: the same as ``sasrec-tf``."""

import sys

from sasrec_tf.cli import main

sys.exit(main())
