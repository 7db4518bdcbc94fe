"""CLI of the reference model service: ``python -m include.model_service [options]``.

Runs uvicorn on 127.0.0.1:8001 by default, fitting the model on the committed sample CSV.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from include.model_service import model as app_settings
from include.model_service.faults import FAULT_KINDS, FaultConfig, parse_mix

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "sample_data" / "painting_sample.csv"


def main(argv: list[str] | None = None) -> int:
    """Parse options and serve the app with uvicorn until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m include.model_service",
        description="Reference painting defect-detection model service.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port (default 8001)")
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA), help="CSV to fit the model on (default: sample)"
    )
    parser.add_argument(
        "--anomaly-body",
        choices=("flat", "predictions"),
        default="flat",
        help="200 body: the flat record (the contract) or {'predictions': [record]}",
    )
    parser.add_argument(
        "--no-model", action="store_true", help="start without a model (/predict/ answers 500)"
    )
    parser.add_argument("--issue-log", default=None, help="append anomalies to this JSONL file")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    version = parser.add_argument_group(
        "model version (a candidate that disagrees with the default on known rows)"
    )
    version.add_argument(
        "--model-version",
        default=app_settings.MODEL_VERSION,
        help=f"the version /model/info names (default {app_settings.MODEL_VERSION})",
    )
    version.add_argument(
        "--threshold",
        type=float,
        default=app_settings.THRESHOLD,
        help=f"relative thickness error at which a row is an anomaly (default "
        f"{app_settings.THRESHOLD})",
    )
    version.add_argument(
        "--mch-threshold",
        type=float,
        default=app_settings.MCH_THRESHOLD,
        help=f"sum of |attributions| below which the machine is blamed (default "
        f"{app_settings.MCH_THRESHOLD})",
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log one line per request (default on; --no-access-log for load tests)",
    )
    faults = parser.add_argument_group(
        "fault injection (off by default; see include/model_service/faults.py)"
    )
    faults.add_argument(
        "--fault-rate", type=float, default=0.0, help="fraction of POST /predict/ calls to fail"
    )
    faults.add_argument(
        "--fault-mix",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds, a kind named twice is drawn twice as often "
        f"(default: {','.join(FAULT_KINDS)})",
    )
    faults.add_argument("--fault-seed", type=int, default=None, help="seed of the fault draws")
    faults.add_argument(
        "--slow-seconds", type=float, default=60.0, help="delay of a 'slow' answer (default 60)"
    )
    faults.add_argument(
        "--retry-after", type=int, default=1, help="Retry-After seconds of a 503 (default 1)"
    )
    faults.add_argument("--fault-limit", type=int, default=None, help="stop after N faults")
    faults.add_argument(
        "--fault-machine",
        action="append",
        default=[],
        metavar="MACHINE_ID",
        help="only calls for this machineId (e.g. PAINT-3) can fail; repeatable",
    )
    args = parser.parse_args(argv)
    try:
        fault_config = FaultConfig(
            rate=args.fault_rate,
            mix=parse_mix(args.fault_mix),
            seed=args.fault_seed,
            slow_seconds=args.slow_seconds,
            retry_after=args.retry_after,
            limit=args.fault_limit,
            machine_ids=frozenset(args.fault_machine),
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        app_settings.check_version(args.model_version, args.threshold, args.mch_threshold)
    except ValueError as exc:
        parser.error(str(exc))
    if fault_config.enabled and args.workers > 1:
        parser.error("fault injection needs --workers 1 (the draws and counts are per process)")

    # Imported here so that --help stays instant.
    import uvicorn

    from include.model_service import app as app_module

    data = None if args.no_model else args.data
    if data is not None and not Path(data).is_file():
        print(f"warning: {data} not found; serving without a model", file=sys.stderr)
    # INFO: uvicorn's start lines ("Uvicorn running on ...") and, with the access log, one line per
    # request; both go to the log file `make run` gives the service (.local/logs/model-service.log).
    common = {
        "host": args.host,
        "port": args.port,
        "log_level": "info",
        "access_log": args.access_log,
    }
    if args.workers > 1:
        # Worker processes rebuild the app from an import string, so settings travel via env.
        os.environ[app_module.ENV_DATA] = data or ""
        os.environ[app_module.ENV_ANOMALY_BODY] = args.anomaly_body
        os.environ[app_module.ENV_ISSUE_LOG] = args.issue_log or ""
        os.environ[app_module.ENV_MODEL_VERSION] = args.model_version
        os.environ[app_module.ENV_THRESHOLD] = str(args.threshold)
        os.environ[app_module.ENV_MCH_THRESHOLD] = str(args.mch_threshold)
        uvicorn.run(
            "include.model_service.app:create_app_from_env",
            factory=True,
            workers=args.workers,
            **common,
        )
    else:
        app = app_module.create_app(
            data,
            anomaly_body=args.anomaly_body,
            issue_log=args.issue_log,
            model_version=args.model_version,
            threshold=args.threshold,
            mch_threshold=args.mch_threshold,
        )
        if fault_config.enabled:
            from include.model_service.faults import FaultInjection

            print(f"fault injection on: {fault_config}", file=sys.stderr)
            uvicorn.run(FaultInjection(app, fault_config), **common)
        else:
            uvicorn.run(app, **common)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
