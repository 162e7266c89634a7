"""Ledgerline email service (the package is `mailer`: `email` is the standard library)."""
