"""Loopback emulators of outside services, for tests that must use the real client libraries."""
