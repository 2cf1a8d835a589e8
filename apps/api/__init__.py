"""The REST API over the domain services."""
