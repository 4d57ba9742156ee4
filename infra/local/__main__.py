"""``python -m infra.local`` (``make run``): the local stack in the foreground; Ctrl-C stops it."""

from .stack import main

raise SystemExit(main())
