"""Signing in and out, applying, the signed links mail carries, and who may see which page (access.py)."""
