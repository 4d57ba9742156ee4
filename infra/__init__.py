"""Everything around the functions: local stack, build and bench scripts (dev only, never shipped)."""
