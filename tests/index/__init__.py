"""Tests of :mod:`rearcquest.index`, one file per module (fixtures in ``conftest.py``)."""
