# The Airflow image of docker-compose.yaml: Airflow's official image plus this package's pinned
# runtime requirements. DAGs, plugins and include/ are mounted by the compose file, not copied
# here, and no secret is (.dockerignore keeps everything but the requirements out of the build
# context). The base tag must match apache-airflow in requirements.txt (a test checks it).
FROM apache/airflow:3.3.2-python3.11

# As in Airflow's "extending the image" guide: install as the airflow user; the image's own
# packages come from Airflow's official constraints, pip changes only what requirements.txt pins.
COPY --chown=airflow:root requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
