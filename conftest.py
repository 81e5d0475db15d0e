"""Shared pytest setup: the local MoltCities server fixtures for every test directory.

It sits at the repository root rather than in ``tests/`` so that mypy, which checks ``tests/``
without packages, never sees two top-level modules named ``conftest``.
"""

from hypothesis import HealthCheck, settings

pytest_plugins = [
    "langchain_moltcities.server.pytest_plugin",
    "langchain_moltcities.fleet.pytest_plugin",
]

# Hypothesis's timing checks (a per-example deadline, "data generation is too slow") measure
# the machine, not the code: on a busy CI box they fail tests that are fine.
settings.register_profile(
    "busy-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("busy-machine")
