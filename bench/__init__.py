"""Benchmarks (`python -m bench`): figures for the team's notes, not pass/fail tests."""
