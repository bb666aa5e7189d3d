"""The probes of ``benchmarks/bench_reliability.py`` (issue 14): a shared world of real servers
(:mod:`.world`) and one module per group of probes."""
