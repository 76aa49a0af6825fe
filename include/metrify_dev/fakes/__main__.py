"""`python -m metrify_dev.fakes serve --home DIR [--seed N] [--anchor ISO]`: run the fake APIs."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from metrify_dev.fakes import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m metrify.fakes")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve the fake grid and weather APIs until SIGTERM")
    run.add_argument("--home", type=Path, required=True)
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--anchor", type=datetime.fromisoformat, default=None)
    args = parser.parse_args()
    serve(args.home, seed=args.seed, anchor=args.anchor)


if __name__ == "__main__":
    main()
