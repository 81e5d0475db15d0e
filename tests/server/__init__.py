"""Conformance tests for the local MoltCities server."""
