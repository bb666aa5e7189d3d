"""Pool defaults with overlap 0, as production accepts them (Toloka's getting-started notebook sends
``default_overlap_for_new_task_suites: 0``), through toloka-kit against a local Toloka server.

OpenAPI ``Defaults`` says 1..30000; production takes 0. What stays refused: a missing suites
default, negatives, non-integers and values above 30000. A task in a pool whose default overlap is 0
needs its own overlap or ``infinite_overlap``.
"""

from __future__ import annotations

import datetime as dt

import pytest
import toloka.client as toloka
from toloka.client.exceptions import ValidationApiError

from helpers_local_toloka import start_local_toloka

pytestmark = pytest.mark.server  # one module-scoped local Toloka subprocess

TOKEN = "local-test-token-overlap0"
PROJECT = {"public_name": "p", "task_spec": {
    "input_spec": {"image": {"type": "url", "required": True}},
    "output_spec": {"result": {"type": "json", "required": True}},
    "view_spec": {"type": "classic", "markup": "x"}}}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    handle = start_local_toloka(tmp_path_factory.mktemp("overlap0"), TOKEN, workers=2, speed=600, seed=1,
                                crowd_module="helpers_local_toloka")
    yield handle.client()
    handle.stop()


@pytest.fixture(scope="module")
def project(client):
    return client.create_project(toloka.Project.structure(PROJECT))


def _pool(project, **defaults):
    return toloka.Pool(project_id=project.id, private_name="p", reward_per_assignment=0.01,
                       assignment_max_duration_seconds=600,
                       will_expire=dt.datetime.utcnow() + dt.timedelta(days=1),
                       defaults=toloka.Pool.Defaults(**defaults),
                       mixer_config=toloka.pool.MixerConfig(real_tasks_count=1))


def test_overlap_zero_defaults_accepted_on_create_and_update(client, project):
    pool = client.create_pool(_pool(project, default_overlap_for_new_task_suites=0, default_overlap_for_new_tasks=0))
    assert pool.defaults.default_overlap_for_new_task_suites == 0
    assert pool.defaults.default_overlap_for_new_tasks == 0
    pool.defaults = toloka.Pool.Defaults(default_overlap_for_new_task_suites=3, default_overlap_for_new_tasks=0)
    pool = client.update_pool(pool.id, pool)
    assert (pool.defaults.default_overlap_for_new_task_suites, pool.defaults.default_overlap_for_new_tasks) == (3, 0)
    pool.defaults = toloka.Pool.Defaults(default_overlap_for_new_task_suites=0)
    pool = client.update_pool(pool.id, pool)
    assert client.get_pool(pool.id).defaults.default_overlap_for_new_task_suites == 0


@pytest.mark.parametrize("defaults, field", [
    ({"default_overlap_for_new_task_suites": -1}, "defaults.default_overlap_for_new_task_suites"),
    ({"default_overlap_for_new_task_suites": 30001}, "defaults.default_overlap_for_new_task_suites"),
    ({"default_overlap_for_new_task_suites": 0, "default_overlap_for_new_tasks": -1},
     "defaults.default_overlap_for_new_tasks"),
    ({"default_overlap_for_new_task_suites": 1, "default_overlap_for_new_tasks": 30001},
     "defaults.default_overlap_for_new_tasks"),
    ({"default_overlap_for_new_tasks": 0}, "defaults.default_overlap_for_new_task_suites"),  # still required
])
def test_refusals_production_keeps(client, project, defaults, field):
    with pytest.raises(ValidationApiError) as err:
        client.create_pool(_pool(project, **defaults))
    assert field in err.value.payload


def test_tasks_in_a_pool_with_overlap_zero_defaults(client, project):
    pool = client.create_pool(_pool(project, default_overlap_for_new_task_suites=0, default_overlap_for_new_tasks=0))
    own = client.create_task(toloka.Task(pool_id=pool.id, input_values={"image": "https://i/1.png"}, overlap=2))
    assert own.overlap == 2
    infinite = client.create_task(toloka.Task(pool_id=pool.id, input_values={"image": "https://i/2.png"},
                                              infinite_overlap=True))
    assert infinite.infinite_overlap is True
    with pytest.raises(ValidationApiError) as err:  # neither its own overlap nor a usable default
        client.create_task(toloka.Task(pool_id=pool.id, input_values={"image": "https://i/3.png"}),
                           allow_defaults=True)
    assert "overlap" in str(err.value.payload)
    # a tasks default of 0 is used as set: no fallback to a non-zero suites default
    pool = client.create_pool(_pool(project, default_overlap_for_new_task_suites=4, default_overlap_for_new_tasks=0))
    with pytest.raises(ValidationApiError):
        client.create_task(toloka.Task(pool_id=pool.id, input_values={"image": "https://i/4.png"}),
                           allow_defaults=True)
    # an unset tasks default still falls back to the suites default (toloka-api.md 4.5)
    pool = client.create_pool(_pool(project, default_overlap_for_new_task_suites=4))
    task = client.create_task(toloka.Task(pool_id=pool.id, input_values={"image": "https://i/5.png"}),
                              allow_defaults=True)
    assert task.overlap == 4
