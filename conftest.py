"""Root of the test run: what `--doctest-modules` must not import.

The FiftyOne backend imports fiftyone, an optional extra (about 4 s to import, absent from the step image);
it has no doctests, and tests/integrations tests it when fiftyone is installed.
"""

collect_ignore_glob = ["crowdboxes/integrations/fiftyone_backend.py"]
