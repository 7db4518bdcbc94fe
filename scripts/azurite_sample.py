"""Upload the sample CSV to an Azurite once: the ``azurite-init`` job of docker-compose.yaml.

    python -m scripts.azurite_sample --host azurite --port 10000

Creates the container ``simulator-data`` if needed and uploads
``include/sample_data/painting_sample.csv`` to ``painting-process-equipment/`` unless it is already
there (Azurite's data volume survives restarts). Uses Azurite's public development account.
"""

from __future__ import annotations

import argparse

from scripts import local_services
from scripts.run_local import CONTAINER, SAMPLE_BLOB, upload_sample_once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.azurite_sample", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="Azurite's host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=10000, help="its blob port (default 10000)")
    args = parser.parse_args(argv)
    connection_string = local_services.azurite_connection_string(args.port, args.host)
    if upload_sample_once(connection_string):
        print(f"Uploaded the sample CSV to {CONTAINER}/{SAMPLE_BLOB}", flush=True)
    else:
        print(f"{CONTAINER}/{SAMPLE_BLOB} is already there", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
