"""The fault suite: real processes, real files and real servers, one scenario per test.

Each scenario records what it did and what it observed through the ``record`` fixture;
``python -m tests.faults.report`` renders the last run into ``docs/reliability.md``.
"""
