"""A finished job whose pool was archived (Export --archive, or by hand) is found again, not bought again.

Launch Pool finds its pool by the key in ``private_comment``; an archived pool used to be skipped, so a re-run
after archiving created a new pool and paid for every image again. On the local Toloka over real HTTP.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka import pools
from helpers_rounds import project_from_config, start_local

KEY = "crowdboxes:archived-test:detection_project:pool:0123456789abcdef"
URLS = [f"http://127.0.0.1:9/bucket/{i:02d}{'ab' * 31}.png" for i in range(3)]


@pytest.fixture()
def local(tmp_path):
    with start_local(tmp_path) as handle:
        yield handle


def spec(project_id: str):
    from toloka.client import Pool

    return Pool.structure({
        "project_id": project_id, "private_name": "drawing", "private_comment": KEY, "reward_per_assignment": 0.05,
        "assignment_max_duration_seconds": 600, "auto_accept_solutions": True,
        "will_expire": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)).isoformat(),
        "defaults": {"default_overlap_for_new_task_suites": 3, "default_overlap_for_new_tasks": 3},
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}})


def wanted(urls: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [u.rsplit("/", 1)[1][:16] for u in urls], "url": urls,
                         "control": [False] * len(urls)})


def test_an_archived_pool_is_found_again_and_takes_no_new_tasks(local):
    client = local.client
    project_id = project_from_config(client, "detection_project.json")
    pool, created = pools.ensure_detection_pool(client, spec(project_id), project_id=project_id, key=KEY)
    assert created
    pools.upload_tasks(client, str(pool.id), wanted(URLS), batch_size=10, use_image_id=False)
    client.archive_pool(pool.id)  # closed, no assignment: Toloka archives it
    assert pools.pool_status(client.get_pool(pool.id)) == "ARCHIVED"

    again, created = pools.ensure_detection_pool(client, spec(project_id), project_id=project_id, key=KEY)
    assert (again.id, created) == (pool.id, False)
    assert len(list(client.get_pools(project_id=project_id))) == 1
    found = pools.upload_tasks(client, str(pool.id), wanted(URLS), batch_size=10, use_image_id=False, archived=True)
    assert (found.created, found.already_there, len(found.tasks)) == (0, 3, 3)

    extra = URLS + [f"http://127.0.0.1:9/bucket/03{'ab' * 31}.png"]
    with pytest.raises(CrowdboxesError, match=rf"pool {pool.id} is archived and takes no tasks, but 1 image\(s\)"):
        pools.upload_tasks(client, str(pool.id), wanted(extra), batch_size=10, use_image_id=False, archived=True)
    assert len(list(client.get_tasks(pool_id=pool.id))) == 3


def test_a_live_pool_is_preferred_to_an_archived_one_with_the_same_key(local):
    client = local.client
    project_id = project_from_config(client, "detection_project.json")
    old = client.create_pool(spec(project_id))
    client.archive_pool(old.id)
    live = client.create_pool(spec(project_id))
    assert pools.find_pool(client, project_id, KEY).id == live.id
