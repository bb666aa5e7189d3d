"""Local Toloka: the Toloka REST API (as toloka-kit 1.2.3 uses it) with a simulated crowd, on loopback.

moto-style layout: ``models`` (backend state and rules, no HTTP), ``responses`` (HTTP -> backend),
``urls`` (path map), ``exceptions`` (Toloka error codes), ``server`` (WSGI app, auth, fault
injection, stats), ``scheduler`` (the crowd's work loop), ``crowd`` (the workers' answers),
``cli`` (``python -m crowdboxes local-toloka serve ...``). Nothing else in the package imports it.
"""
