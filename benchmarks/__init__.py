"""tierkit's benchmark suite: tierkit against what users would pick instead, as ratios.

Run ``python -m benchmarks`` (full run: writes ``benchmarks/results.json``, the table in
``docs/benchmarks.md`` and ``docs/img/bench_ratios.png``) or ``python -m benchmarks --quick``
(smoke run in a temporary directory).  See ``docs/benchmarks.md`` for the method.
"""
