"""The carrier side: :mod:`.protocol` (``Carrier``) and one package per carrier (``hook.py`` = the only I/O,
pure request/response mappings, code tables and rules, ``carrier.py`` = the ``Carrier``)."""
