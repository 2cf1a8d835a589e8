"""Projects: a labeling project, its classes, features and members with roles."""
