"""Sandbox tests use the session sandbox fixtures from tests/conftest.py."""
