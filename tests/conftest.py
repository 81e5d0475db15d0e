"""Shared test setup: the local MoltCities server fixtures."""

pytest_plugins = ["langchain_moltcities.server.pytest_plugin"]
