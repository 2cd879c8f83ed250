"""The partner (affiliate) pages."""
