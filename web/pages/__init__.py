"""One blueprint per area of the UI."""
