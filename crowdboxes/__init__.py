"""crowdboxes: crowdsourced bounding boxes on Toloka, run as a cnvrg.io flow.

Data flows one way: ``steps/`` -> this package -> Toloka / S3 / files. The local Toloka
(``crowdboxes.local_toloka``) is a separate server process; nothing else in the package imports it.
"""

__version__ = "0.1.0"
