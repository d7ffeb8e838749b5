"""Tests of the AWS infrastructure (a package, so its conftest does not shadow tests/conftest.py)."""
