"""The CVAT round trip of the riskiest images.

* :mod:`crowdboxes.review.pack` (``python -m crowdboxes review``): the ``--top`` riskiest images of
  images_review.csv with their kept boxes, as a folder to import into CVAT as one task.
* :mod:`crowdboxes.review.cvat_xml`: reads the corrected CVAT for images 1.1 XML with line numbers.
* :mod:`crowdboxes.review.corrections` (``python -m crowdboxes import-corrections``): the reviewed images'
  boxes replaced by the corrected ones in a new boxes.csv, then Export's files written again from it.
"""
