"""Workbench: the pages that compose the lower apps (home, project page) and demo data."""
