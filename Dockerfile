# Astro Runtime for Airflow 3.3. The runtime's ONBUILD steps install requirements.txt and packages.txt and copy
# the project to /usr/local/airflow; then the ml_connector package (include/ml_connector) is installed so that
# its provider entry point registers the `ups` and `business_central` connection types in the UI.
FROM astrocrpublic.azurecr.io/runtime:3.3-2
RUN pip install --no-cache-dir --no-deps /usr/local/airflow
# Set ML_CONNECTOR_FERNET_KEYS (comma-separated Fernet keys) as a secret environment variable of the
# deployment: it encrypts cached tokens in the ledger. Never bake it into the image.
