"""Bridges to tools that are not part of the flow.

* :mod:`crowdboxes.integrations.flow_job`: one annotation job on a folder of staged images (copy the
  images under unique names, the classes into the project configs, run the flow on the local Toloka or on
  Toloka, read its outputs back per image). It needs nothing beyond the flow's own requirements.
* :mod:`crowdboxes.integrations.fiftyone_backend`: a FiftyOne annotation backend (``backend="crowdboxes"``)
  built on the job; the only module of the package that imports ``fiftyone`` (the optional extra
  ``pip install 'crowdboxes[fiftyone]'``).
"""
