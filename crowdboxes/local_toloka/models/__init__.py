"""Backend of the local Toloka: state, rules and status transitions, callable without HTTP.

Split by resource the way moto splits a big service: each module holds one mixin, composed here
into :class:`Backend`.

* :mod:`.base` - constants, money (:func:`cost_for`, :func:`fee_for`), JSON helpers, searches,
  and :class:`~.base.CoreMixin` (SQLite connection, transactions, meta, time, the requester);
* :mod:`.validation` - request-field and input/output value checks shared by the resources;
* :mod:`.projects`, :mod:`.skills`, :mod:`.pools`, :mod:`.operations`, :mod:`.tasks`,
  :mod:`.assignments`, :mod:`.users` (user skills and restrictions), :mod:`.analytics`,
  :mod:`.quality` (quality-control rules) - one API resource each;
* :mod:`.work` - what the crowd scheduler calls (pick, issue, finish and close work);
* :mod:`.trainings`, :mod:`.task_suites`, :mod:`.attachments` - trainings (and pools' training
  requirements), created task suites, and files uploaded as answers; they extend some pool, task and
  work methods through ``super()``.

A new resource: a module with a ``...Mixin`` class, listed in :class:`Backend`'s bases, plus its
handlers in ``responses.py`` and its paths in ``urls.py``. Every name this module exported when it
was one file is still importable from here.
"""

from __future__ import annotations

# Names the one-file models.py had in its namespace stay importable from here (tests patch
# models.threading.Thread).
import threading  # noqa: F401
from decimal import Decimal  # noqa: F401

from crowdboxes.local_toloka import db  # noqa: F401
from crowdboxes.local_toloka.db import fmt_ts, out_ts, parse_ts, utcnow  # noqa: F401
from crowdboxes.local_toloka.exceptions import (DoesNotExist, IncorrectAction, TolokaError,  # noqa: F401
                                                ValidationError, field_error, inappropriate_status)

from crowdboxes.local_toloka.models.analytics import AnalyticsMixin
from crowdboxes.local_toloka.models.assignments import AssignmentsMixin
from crowdboxes.local_toloka.models.attachments import AttachmentsMixin
from crowdboxes.local_toloka.models.base import (ASSIGNMENT_TIME_FIELDS, ASSIGNMENTS, COORD_RE, DEFAULT_BALANCE,  # noqa: F401
                                                 FEE_RATE, FIELD_TYPES, INLINE_BATCH, JSON_ENCODER, MAX_BATCH,
                                                 MIN_FEE, MIN_REWARD, OPERATIONS, OWNER, POOLS, PROJECTS, REAL_SQL,
                                                 RESTRICTIONS, SKILL_EDITABLE, SKILLS, TASKS, TSV_STATUS, URL_RE,
                                                 USER_SKILLS, CoreMixin, RawJSON, SearchSpec, _convert, _doc, _dumps,
                                                 _id_ranges, _int_or_missing, _loads_cached, _num, build_search,
                                                 cost_for, fee_for, golden_sql, object_id)
from crowdboxes.local_toloka.models.operations import OperationsMixin
from crowdboxes.local_toloka.models.pools import PoolsMixin
from crowdboxes.local_toloka.models.projects import ProjectsMixin
from crowdboxes.local_toloka.models.quality import QualityMixin
from crowdboxes.local_toloka.models.skills import SkillsMixin
from crowdboxes.local_toloka.models.task_suites import TaskSuitesMixin
from crowdboxes.local_toloka.models.tasks import TasksMixin
from crowdboxes.local_toloka.models.trainings import TrainingsMixin
from crowdboxes.local_toloka.models.users import UsersMixin
from crowdboxes.local_toloka.models.validation import (_compare, _decimal, _integer, _require_object,  # noqa: F401
                                                       _string, _timestamp, project_difference,
                                                       validate_input_values, validate_value)
from crowdboxes.local_toloka.models.work import WorkMixin


# TrainingsMixin, TaskSuitesMixin and AttachmentsMixin come before the mixins whose methods they extend
# through super() (pools' validation and listing, task preparation, open_pools / suite_tasks /
# issue_suite / available_tasks / can_afford / finish_due): see their module docstrings. Every mixin
# builds on CoreMixin (so the type checker sees the connection, transactions and clock), which comes last.
class Backend(TrainingsMixin, TaskSuitesMixin, AttachmentsMixin, ProjectsMixin, SkillsMixin, PoolsMixin,
              OperationsMixin, TasksMixin, AssignmentsMixin, UsersMixin, AnalyticsMixin, QualityMixin, WorkMixin,
              CoreMixin):
    """The whole local Toloka state. Thread safe: one RLock, one SQLite connection.

    ``Backend(state_dir, *, balance=None, speed=60.0, reader_hold_seconds=600.0,
    first_reader_seconds=90.0, clock=utcnow)``; see
    :class:`~.base.CoreMixin` and, for the hold of completed pools, :mod:`.readers`.
    """
