"""Plumbing the domain apps share (no models): sending Celery tasks."""
