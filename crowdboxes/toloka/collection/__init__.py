"""Collecting a pool's answers from Toloka incrementally, surviving crashes, and turning them into pixels.

The collector follows three event streams of one or more pools (``submitted``, ``accepted``,
``rejected``) with its own cursor per stream, like toloka-kit's ``AssignmentCursor``: a query
``<event>_gte=<cursor time>&<event>_lte=<now - lag>&sort=<event>,id`` and, at the cursor time,
a set of already seen ids. Every new assignment snapshot and every cursor move is appended to a
JSON-lines journal and fsynced before anything else happens, so a re-run after a crash starts
where the last run stopped and nothing already collected is fetched or lost twice.

An assignment's content (tasks, solutions, submit time) never changes after submission; its
status can (``SUBMITTED -> ACCEPTED | REJECTED``, ``REJECTED -> ACCEPTED``). Each snapshot is
stamped with its last modification time ``max(submitted, accepted, rejected)`` and the newest one
wins, which makes the outcome independent of the order the streams were read in. Before results
are written, :meth:`~crowdboxes.toloka.collection.collector.AnswerCollector.rescan` reads every
submitted assignment of the pools once more, so the final answers depend only on the server's final
state, not on when a run crashed.

One module per job:

* :mod:`.snapshots`: an assignment as the journal records it, and the UTC times it is stamped with;
* :mod:`.journal`: the append-only, fsynced JSON-lines file;
* :mod:`.cursor`: the position in one event stream of one pool;
* :mod:`.collector`: :class:`~.collector.AnswerCollector`, the streams of some pools into one journal;
* :mod:`.wait`: polling until a pool is done (``pool_state``, ``wait_for_pool``);
* :mod:`.progress`: the progress bar or log line and cnvrg's line charts;
* :mod:`.solutions`: the collected solutions as answers.csv rows in pixels.
"""
