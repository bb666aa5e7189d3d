"""Toloka requests per object, counted by the local Toloka itself (``GET /_local/stats``) over real HTTP: a task
upload reads the pool's tasks in pages of :data:`crowdboxes.toloka.client.LIST_PAGE`, never toloka-kit's 50."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.steps.create_project import CreateProjectOptions, create_project
from crowdboxes.toloka import pools
from helpers_local_toloka import start_local_toloka

TOKEN = "request-counts-token"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def toloka(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toloka")
    with start_local_toloka(folder, TOKEN, workers=1, seed=3, crowd_module="helpers_local_toloka") as handle, \
            pytest.MonkeyPatch.context() as patch:
        patch.setenv("toloka_token", TOKEN)
        create_project(CreateProjectOptions(toloka_env=handle.url, token_env="toloka_token",
                                            output_dir=str(folder / "create_project"), config_dir=str(CONFIGS),
                                            project_key="counts"))
        handle.projects = pd.read_csv(folder / "create_project" / "projects.csv",
                                      dtype=str).set_index("role")["toloka_id"].to_dict()
        yield handle


def test_uploading_240_tasks_in_two_batches_lists_the_pool_three_times(toloka):
    """Listed before, under the lease and after (one page each), two batches of 120 created in one request and
    one operation log each. toloka-kit's create_tasks(async_mode=True) also read each batch back 50 at a time
    (3 more listings per batch)."""
    client = toloka.client()
    settings = pools.parse_pool_settings(mode="overlap", reward="0.1", overlap="3", tasks_per_suite="1",
                                         time_per_suite="300", auto_accept="true", review_days="5", languages="en",
                                         expiry_days="3", adult_content="false")
    pool = client.create_pool(pools.build_detection_pool(
        pools.load_pool_config(CONFIGS / "detection_pool.json"), settings,
        project_id=toloka.projects["detection_project"], skill_ids=toloka.projects, key="counts:detection:pool:240",
        will_expire=datetime.now(timezone.utc) + timedelta(days=1)))
    wanted = pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(240)], "control": False,
                           "url": [f"http://127.0.0.1:9/bucket/{i:064x}.png" for i in range(240)]})
    toloka.admin("POST", "/_local/stats/reset")
    result = pools.upload_tasks(client, pool.id, wanted, batch_size=120, use_image_id=False, log=lambda m: None)
    assert (result.created, result.already_there, len(result.tasks), result.failed) == (240, 0, 240, [])
    calls = toloka.admin("GET", "/_local/stats")["requests"]
    assert (calls["GET find_tasks"], calls["POST create_tasks"], calls["GET get_operation_log"]) == (3, 2, 2), calls
    assert len(list(client.get_tasks(pool_id=pool.id))) == 240
