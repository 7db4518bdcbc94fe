"""Domain logic of the painting simulator: plain Python, no Airflow, no pandas at import time.

The DAGs under ``dags/`` are wiring; everything they decide (which rows, how a row becomes a
request, what an answer means, how results are recorded) lives here and is unit-tested directly.
"""
