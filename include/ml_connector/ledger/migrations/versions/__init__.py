"""Revision scripts of the ledger schema (one file per revision, oldest first)."""
