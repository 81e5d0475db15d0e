"""Benchmarks of langchain-moltcities: one module per figure, ``python -m benchmarks.run``.

Every figure is a ratio or a bound measured in the same run (these machines are shared and
noisy), written as a markdown table to ``benchmarks/RESULTS.md``. Benchmarks are not tests.
"""
