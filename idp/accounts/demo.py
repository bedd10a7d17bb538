"""Demo data for ``make run`` (filled in below)."""
