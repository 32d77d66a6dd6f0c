"""Observability handed to the parts that record: metrics, health, logs."""
