"""Reading results for the dashboard plugin (``plugins/painting_dashboard.py``), without Airflow."""
