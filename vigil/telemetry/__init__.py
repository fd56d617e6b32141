"""Telemetry: what vigil counts and watches for its operator.

`metrics` is the port (and its no-op twin) the actors and the outbox report to; `prometheus` serves it
at `/metrics` when VIGIL_METRICS_LISTEN is set, reading live sessions through small Protocols;
`disk` watches the store's and the media's disk and tells the admins once a day when room runs out.
A new metric is a method on the port, its no-op, and its Prometheus family.

May import the model's prices, the ports and the values beneath; never the actors (they import this).
"""
