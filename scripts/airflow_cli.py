"""``make airflow ARGS="dags list"``: the Airflow CLI against the local stack of ``make run``.

Runs ``python -m airflow ARGS`` with exactly the environment ``make run`` gives its Airflow
processes (:func:`scripts.run_local.airflow_env`: AIRFLOW_HOME ``.airflow/``, this package's DAGs
and plugins folders, the api-server's address, the password file), so it sees the same metadata DB,
connections and Variables. Works while ``make run`` runs and, for what needs only the DB
(``dags list``, ``dags trigger``, ``connections get`` ...), while it is stopped.
"""

from __future__ import annotations

import os
import sys

from scripts import run_local


def main(argv: list[str]) -> int:
    try:
        env = run_local.airflow_env(run_local.airflow_port())
    except run_local.StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # exec: the CLI owns the terminal (prompts, Ctrl-C) and its exit code is make's.
    os.execve(sys.executable, [sys.executable, "-m", "airflow", *argv], env)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
