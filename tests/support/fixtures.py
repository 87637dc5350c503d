"""Shared pytest fixtures (registered from tests/conftest.py)."""
