"""The logic of each flow step: one module per ``steps/<name>.py`` script, named the same.

A script in ``steps/`` is what cnvrg runs: its docstring (inputs, outputs, a sample command,
troubleshooting), an argparse parser with the step's ``--key`` params, and a ``main`` that parses them
into the module's options object and makes one call here, e.g.
``create_project(CreateProjectOptions(**vars(args)))``. The module reads the step's inputs, checks
them, calls the library (:mod:`crowdboxes.toloka`, :mod:`crowdboxes.storage`, :mod:`crowdboxes.aggregation`,
:mod:`crowdboxes.export`, ...) and writes the outputs declared in :mod:`crowdboxes.artifacts`.

* :mod:`~crowdboxes.steps.create_project`: get-or-create the Toloka projects and skills from configs/.
* :mod:`~crowdboxes.steps.upload_images`: check the images and put them in S3 for the crowd.
* :mod:`~crowdboxes.steps.launch_pool`: make the pools and their tasks.
* :mod:`~crowdboxes.steps.wait_pool`: wait for the crowd and collect every answer.
* :mod:`~crowdboxes.steps.aggregate_boxes`: merge the workers' rectangles into one set per image.
* :mod:`~crowdboxes.steps.export`: COCO JSON, a flat CSV and a summary, published as a dataset version.

Failures are :class:`~crowdboxes.errors.CrowdboxesError` with one line naming the param, file, row or
field; the script's ``run_step`` prints it as ``error: ...`` and exits with code 2.
"""
