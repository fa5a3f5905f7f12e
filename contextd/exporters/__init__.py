"""Outputs that render the engine's snapshot: Prometheus exposition and OTLP push."""
