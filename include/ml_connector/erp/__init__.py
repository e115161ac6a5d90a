"""The ERP side: :mod:`.protocol` (``OrderSource``) and one vendor package per ERP (``hook.py`` = the only I/O,
``mapping.py`` = pure, ``source.py`` = the ``OrderSource``, ``connection.py`` = the connection form)."""
