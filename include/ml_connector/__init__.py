"""ml-connector: Airflow 3 hooks, operators and DAG factory that connect ERPs to parcel carriers."""

__version__ = "0.1.0"
