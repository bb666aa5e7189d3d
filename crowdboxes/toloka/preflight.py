"""Toloka-side checks a step makes before it creates, opens or pays for anything.

Local checks (params, files, configs) come first in each step; these read Toloka only (GET requests), so a
job that names an object Toloka does not have fails in one line while the account is still untouched.

* :func:`skill_references`: every skill id a pool spec filters on (``{"category": "skill", "key": id}``) or
  sets (a quality-control action's ``skill_id``), each with where it came from.
* :func:`check_skills_exist`: ``GET /skills/{id}`` for each; a missing one is a CrowdboxesError naming the id
  and the config or projects.csv row that names it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka.fields import walk_dicts

SKILL_CATEGORY = "skill"  # a filter condition on a worker's skill: {"category": "skill", "key": <id>, ...}


def spec_json(spec: Any) -> Any:
    """A pool spec as JSON data: a toloka-kit object through its ``to_json``, a dict or list as it is."""
    return json.loads(spec.to_json()) if hasattr(spec, "to_json") else spec


def skill_references(spec: Any, where: str) -> dict[str, str]:
    """``{skill id: where}`` for every skill ``spec`` filters on or sets.

    Ids still written as a ``$<role>`` placeholder (an unresolved config) are not Toloka ids and are left out.
    """
    found: dict[str, str] = {}
    for node in walk_dicts(spec_json(spec)):
        if node.get("category") == SKILL_CATEGORY and node.get("key") is not None:
            found.setdefault(str(node["key"]), f"{where} filter")
        if node.get("skill_id") is not None:
            found.setdefault(str(node["skill_id"]), f"{where} quality control")
    return {skill_id: place for skill_id, place in found.items() if not skill_id.startswith("$")}


def check_skills_exist(client: Any, references: Mapping[str, str]) -> None:
    """``GET /skills/{id}`` for every id of ``references`` (``{id: where it is named}``), in id order;
    CrowdboxesError (one line) for the first one Toloka does not have, or cannot be read."""
    from toloka.client.exceptions import DoesNotExistApiError

    for skill_id in sorted(references, key=lambda s: (len(s), s)):
        try:
            client.get_skill(skill_id)
        except DoesNotExistApiError:
            raise CrowdboxesError(f"skill {skill_id} ({references[skill_id]}) does not exist on Toloka: re-run "
                                  f"Create Project, or fix the config (nothing was created)") from None
        except Exception as exc:  # a 403 (another requester's skill), a network failure after retries
            raise CrowdboxesError(f"skill {skill_id} ({references[skill_id]}) cannot be read from Toloka "
                                  f"({type(exc).__name__}); nothing was created") from None
