"""Hook building blocks: :mod:`.base` (``ConnectorHook``, an ``HttpHook`` with a safe session and the token
store) and :mod:`.auth` (the auth styles: API key, HTTP Basic, client-credentials bearer, rotating refresh
token, session logon/logoff)."""
