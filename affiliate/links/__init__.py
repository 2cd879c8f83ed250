"""Affiliates' tracking links."""
