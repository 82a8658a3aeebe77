"""Processing (see service.py)."""
