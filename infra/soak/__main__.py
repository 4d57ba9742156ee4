"""``python -m infra.soak [--seed N] [--senders N] [--without KIND ...] [--json FILE]`` (``make soak``)."""

import sys

from .run import main

sys.exit(main())
