"""SYSPRO 8 -> carrier: e.net Solutions REST (session logon, business objects) and the SYSPRO OData service."""
