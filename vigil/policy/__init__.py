"""TODO: what this package holds and what it may import."""
