"""Labeling: the append-only label history, the queue and exports."""
