"""Conversion pages: every conversion with its attribution trace, for staff and for the credited affiliate."""
