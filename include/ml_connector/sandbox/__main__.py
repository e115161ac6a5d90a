"""``python -m ml_connector.sandbox``: serve the sandbox vendor APIs on loopback (see ``server.py``)."""

from ml_connector.sandbox.server import main

raise SystemExit(main())
