"""`hybrid bench`: the overload benchmark.

Transport-light parts, each usable and tested on its own:

* ``workload``: the traffic as a deterministic open-loop schedule of ``Arrival``s.
* ``wan``: a delaying TCP proxy that emulates a WAN round trip on loopback.
* ``loadgen``: sends a schedule open-loop and records every request's outcome.
* ``baseline``: plain round-robin over the replicas, the "unoptimized setup" to compare with.
* ``report``: success, latency percentiles, throughput, tier mix and cost from the records.
* ``overload``: starts the stack, runs the schedule against the baseline and the router, reports.
"""
