"""`make bench`: throughput, latency, CPU and memory of the hub against a plain reference."""
