"""Cases: the patients or records to label, and how they are imported."""
