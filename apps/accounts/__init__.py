"""Accounts: the people who use Casebook."""
