"""Helpers shared by the tests: classes, functions and data, never a fixture or a test.

Fixtures live in the ``conftest.py`` files (which import what they need from here); a test
module imports helpers from here, never from another test module or a conftest. No module here
imports a test module. ``tests/layout_tests/`` keeps it so.
"""
