"""Outbound requests (affiliate/outbound.py): stub DNS answers and a record of every connection attempt."""

from __future__ import annotations

import socket

import pytest

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


class StubResolver:
    """A getaddrinfo stand-in: the n-th call answers the n-th list of addresses (the last one from then on)."""

    def __init__(self, *rounds: list[str]) -> None:
        self.rounds = rounds
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):
        self.calls.append((host, port))
        addresses = self.rounds[min(len(self.calls), len(self.rounds)) - 1]
        return [getaddrinfo_entry(address, port) for address in addresses]


def getaddrinfo_entry(address: str, port: int) -> tuple:
    """One getaddrinfo result; a "%zone" IPv6 address carries a scope id, as the real one does."""
    if ":" in address:
        scope = 2 if "%" in address else 0
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, scope))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))


def record_connections(monkeypatch: pytest.MonkeyPatch, *, refuse: bool) -> list[tuple[str, int]]:
    """Record every TCP connection send() opens; with ``refuse`` none is opened (no traffic leaves the test)."""
    attempts: list[tuple[str, int]] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        attempts.append(address)
        if refuse:
            raise ConnectionRefusedError("refused by the test")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempts
