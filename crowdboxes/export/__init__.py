"""Deliverables from the aggregated boxes: COCO JSON, a flat CSV and a run summary (Export's library).

:mod:`~crowdboxes.export.annotations` builds them; :mod:`crowdboxes.steps.export` writes and publishes them.
"""
