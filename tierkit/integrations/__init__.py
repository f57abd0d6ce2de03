"""Integrations at the edge: metrics for Prometheus and OpenTelemetry, and the live ``tierkit stats --watch``.

Each module imports its library lazily (installed through an extra: ``tierkit[prometheus]``,
``tierkit[otel]``, ``tierkit[watch]``); importing :mod:`tierkit` imports none of them.
"""
