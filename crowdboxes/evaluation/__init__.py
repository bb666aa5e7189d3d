"""Scoring boxes against a ground truth: the COCO truth files (:mod:`.truth`) and the metrics (:mod:`.metrics`).

Boxes are matched one-to-one by :func:`crowdboxes.geometry.match_boxes`, the matcher the known-box scoring
of workers uses too.
"""
