"""``python -m crossroute_cli``."""

from .app import main

main()
