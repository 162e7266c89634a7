"""Ledgerline payment service."""
