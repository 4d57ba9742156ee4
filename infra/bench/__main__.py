"""python -m infra.bench [--runs N] [--section NAME ...] [--strict]"""

from __future__ import annotations

import argparse
import sys

from infra.bench import Context, sections


def main(argv: list[str] | None = None) -> int:
    available = sections()
    parser = argparse.ArgumentParser(prog="python -m infra.bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per measurement (>= 7)")
    parser.add_argument("--section", action="append", choices=list(available), help="only these sections")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args(argv)
    if args.runs < 7:
        parser.error("--runs must be at least 7")
    context = Context(runs=args.runs)
    missed = 0
    for name in args.section or list(available):
        table = available[name](context)
        print(table.render(), end="\n\n", flush=True)
        missed += len(table.missed)
    if missed:
        print(f"{missed} goal(s) missed")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
