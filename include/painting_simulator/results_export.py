"""Writes the results database's records back to JSON-lines ledger files, byte for byte.

For anything built on the files (``docs/results.md``): :func:`export_ledgers` writes
``painting_issue_logs.jsonl``, ``painting_normal_logs.jsonl``, ``painting_errors.jsonl``,
``painting_run_failures.jsonl`` and ``painting_replay_summary.jsonl`` from the tables of a
:class:`results_db.DatabaseResults`, for the records logged in ``[since, until)``. Each line is the
record's JSON text as the database holds it, which is the line the JSON-lines store writes; lines
are ordered by ``timestamp``, then run, blob and row (the files written live are in write order).
"""

from __future__ import annotations

import os
from datetime import datetime

from include.painting_simulator import settings
from include.painting_simulator.results_db import DatabaseResults, bound

# (table, kind or None, file) of every file an export writes.
EXPORTS = [
    *((settings.RESULTS_TABLE, kind, settings.LEDGER_FILES[kind]) for kind in settings.KINDS),
    (settings.RUN_FAILURES_TABLE, None, settings.RUN_FAILURES_LEDGER),
    (settings.REPLAY_REPORTS_TABLE, None, settings.REPLAY_SUMMARY_FILE),
]


def export_ledgers(
    store: DatabaseResults,
    out_dir: str,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
) -> dict[str, int]:
    """Write the ledger files of the records logged in ``[since, until)`` to ``out_dir``; the
    lines written per file. Refuses to replace a file that is already there and not empty."""
    bound(since, store.dialect), bound(until, store.dialect)  # a malformed time: before any file
    os.makedirs(out_dir, exist_ok=True)
    taken = [
        name
        for _, _, name in EXPORTS
        if os.path.exists(path := os.path.join(out_dir, name)) and os.path.getsize(path)
    ]
    if taken:
        raise FileExistsError(
            f"{out_dir} already holds {', '.join(taken)}: export to an empty directory"
        )
    counts: dict[str, int] = {}
    for table, kind, name in EXPORTS:
        path = os.path.join(out_dir, name)
        count = 0
        try:
            with open(f"{path}.tmp", "w", encoding="utf-8") as fh:
                for line in store.lines(table, since, until, kind=kind):
                    fh.write(line + "\n")
                    count += 1
        except BaseException:
            os.remove(f"{path}.tmp")  # no half-written file
            raise
        if count:
            os.replace(f"{path}.tmp", path)
        else:
            os.remove(f"{path}.tmp")  # like the live store: no file for no record
        counts[name] = count
    return counts
