"""Pure machine-learning code: pipelines, splits, metrics and model files. No Django here."""
