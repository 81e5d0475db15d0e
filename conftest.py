"""Shared pytest setup: the local MoltCities server fixtures for every test directory.

It sits at the repository root rather than in ``tests/`` so that mypy, which checks ``tests/``
without packages, never sees two top-level modules named ``conftest``.
"""

pytest_plugins = [
    "langchain_moltcities.server.pytest_plugin",
    "langchain_moltcities.fleet.pytest_plugin",
]
