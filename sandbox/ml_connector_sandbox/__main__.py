"""``python -m ml_connector_sandbox``: serve the sandbox vendor APIs on loopback (see ``server.py``)."""

from ml_connector_sandbox.server import main

raise SystemExit(main())
