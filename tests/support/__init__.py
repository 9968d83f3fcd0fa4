"""Helpers shared by every test suite, on the local runtime's embedded AWS (``local.aws``).

``aws``: tables shaped as serverless.yml declares them, the consumers' queues named by the
registry, queue depth and contents. ``users``: users-table items before and after the schema
change, their stream records, and writing them to a table. The ``aws`` fixture
(``tests/conftest.py``) gives each test a fresh moto state to use them on.
"""
