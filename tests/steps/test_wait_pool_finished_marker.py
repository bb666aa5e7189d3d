"""Wait Pool's finished marker on the detection project: it holds the task count the pool was completed with,
so that images added later (a Launch Pool re-run) are waited for instead of being taken as done."""

from __future__ import annotations

from crowdboxes.steps.wait_pool import FINISHED_MARKER, finished_marker, mark_finished
from crowdboxes.toloka.lease import finished_key


class Project:
    """The part of :class:`crowdboxes.toloka.lease.MetadataTarget` the marker uses."""

    def __init__(self) -> None:
        self.metadata: dict[str, list[str]] = {}

    def read(self) -> dict[str, list[str]]:
        return dict(self.metadata)

    def update(self, change) -> dict[str, list[str]]:
        change(self.metadata)
        return self.metadata


TIMES = {"first_started_at": "2026-01-01T10:00:00Z", "started_at": "2026-01-01T10:00:01Z",
         "finished_at": "2026-01-01T11:00:00Z", "duration_seconds": 3599.0}


def test_the_marker_holds_the_task_count_and_is_void_once_tasks_were_added(capsys):
    project = Project()
    mark_finished(project, "12", "verify", {**TIMES, "tasks": 7})
    marker = project.metadata[finished_key("12")]
    assert dict(zip(FINISHED_MARKER, marker)) == {"finished_at": "2026-01-01T11:00:00Z", "mode": "verify",
                                                  "first_started_at": "2026-01-01T10:00:00Z",
                                                  "started_at": "2026-01-01T10:00:01Z", "duration_seconds": "3599.0",
                                                  "tasks": "7"}
    assert finished_marker(project, "12", tasks=7) == marker
    assert finished_marker(project, "12", tasks=10) is None
    assert "completed with 7 tasks and has 10 now (images were added); waiting for the new ones" in capsys.readouterr().err


def test_markers_of_earlier_versions_without_a_count_still_hold():
    project = Project()
    project.metadata[finished_key("12")] = ["2026-01-01T11:00:00Z", "overlap"]
    assert finished_marker(project, "12", tasks=3) == ["2026-01-01T11:00:00Z", "overlap"]
    project.metadata[finished_key("12")] = ["2026-01-01T11:00:00Z", "overlap", "", "", "12.0"]
    assert finished_marker(project, "12", tasks=3) is not None
