"""Modeling: training runs, model versions and the retrain scheduler."""
