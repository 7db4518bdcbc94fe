"""``python -m scripts.export_results``: the results database exported to JSON-lines ledger files.

Writes the ledger files of the records logged in ``[--since, --until)`` (ISO-8601; a time without
a zone is UTC) from the results database into ``--out`` (a new or empty directory), byte for byte
as the JSON-lines store would have written them (``docs/results-database.md#export``). The
database is the Airflow connection ``painting_results_db`` (``--conn-id`` for another; any way
Airflow finds connections works: ``AIRFLOW_CONN_PAINTING_RESULTS_DB``, the metadata DB, a
secrets backend), or a SQLAlchemy URL given with ``--url``.
"""

from __future__ import annotations

import argparse
import sys

from include.painting_simulator import settings


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.export_results", description=__doc__)
    parser.add_argument("--out", required=True, help="directory to write the .jsonl files to")
    parser.add_argument("--since", help="first logged time included (ISO-8601, default: all)")
    parser.add_argument("--until", help="first logged time excluded (ISO-8601, default: all)")
    source = parser.add_mutually_exclusive_group()
    default = settings.RESULTS_DB_CONN_ID
    source.add_argument("--conn-id", default=default, help=f"Airflow connection ({default})")
    source.add_argument("--url", help="a SQLAlchemy URL instead of an Airflow connection")
    return parser.parse_args(argv)


def open_store(args: argparse.Namespace):  # -> DatabaseResults
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from include.painting_simulator.results_db import DatabaseResults, engine_kwargs

    if args.url:
        url = make_url(args.url)
        return DatabaseResults(create_engine(url, **engine_kwargs(url.get_backend_name())), "--url")
    from include.painting_simulator.airflow_runtime import results_database

    engine = results_database(args.conn_id)
    if engine is None:
        raise LookupError(f"Airflow has no connection {args.conn_id!r}: nothing to export from")
    return DatabaseResults(engine, args.conn_id)


def main(argv: list[str]) -> int:
    from include.painting_simulator.results_db import ResultsDatabaseError
    from include.painting_simulator.results_export import export_ledgers

    args = parse_args(argv)
    try:
        store = open_store(args)
        counts = export_ledgers(store, args.out, args.since, args.until)
    except (ResultsDatabaseError, LookupError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, count in counts.items():
        print(f"{count:>10} line(s)  {name}")
    print(f"exported from {store.url} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
