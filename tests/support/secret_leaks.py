"""Counting the storage secrets (account key, connection string) found in a text.

The reliability tests grep task output, ledgers and every log file with this: zero hits.
"""

from __future__ import annotations


def secret_hits(text: str, account_key: str, connection_string: str) -> dict[str, int]:
    """How often the key and the connection string (and the key's URL-quoted form) appear."""
    from urllib.parse import quote

    needles = {
        "account key": account_key,
        "account key (URL-quoted)": quote(account_key, safe=""),
        "connection string": connection_string,
    }
    return {name: text.count(needle) for name, needle in needles.items() if needle in text}
