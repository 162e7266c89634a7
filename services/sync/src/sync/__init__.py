"""Ledgerline sync service."""
