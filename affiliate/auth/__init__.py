"""Signing in, signing out, applying, and who may see which page."""
