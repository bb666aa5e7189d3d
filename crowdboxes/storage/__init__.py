"""Where the images live for the crowd: checking image files and putting them in S3 (or an S3-compatible store).

* :mod:`~crowdboxes.storage.images`: scan, validate and de-duplicate images, upload each once, make public or
  presigned URLs (Upload Images' library).
* :mod:`~crowdboxes.storage.local_s3`: a local S3 server for the demo and the tests (``python -m crowdboxes local-s3``).
"""
