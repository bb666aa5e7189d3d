"""Crowd quality-control settings: parsed and checked before anything is created on Toloka.

Everything here is pure (no Toloka calls), so a bad setting fails in one line while the requester's
account is still untouched: an unknown ``--mode``, a verification pool config whose audience filter
would let drawers judge their own work, a budget that cannot pay for even one assignment, an
unknown ``--verdict_method``, ``--verifiers`` or ``--max_attempts`` below 1.

Money (the fee, the minimum reward) is :mod:`crowdboxes.toloka.pricing`.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable
from typing import Any

import attr

from crowdboxes.artifacts import VERIFICATION_POOL_CONFIG
from crowdboxes.params import is_none
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import read_json_object
from crowdboxes.toloka.pricing import MIN_REWARD, assignment_price, toloka_fee

MODES = ("overlap", "verify", "overlap+verify")
VERDICT_METHODS = ("majority", "dawid_skene")

# Pool configs name skills by their projects.csv role; launch replaces "$<role>" with the Toloka id.
SKILL_PLACEHOLDER = "$"
DRAWER_SKILL_ROLE = "drawer_skill"
VERIFIER_SKILL_ROLE = "verifier_skill"
CONTROL_SKILL_ROLE = "control_skill"
SKILL_ROLES = (DRAWER_SKILL_ROLE, VERIFIER_SKILL_ROLE, CONTROL_SKILL_ROLE)  # the keys of skills.json



def parse_mode(value: object, source: str | None = None) -> str:
    """The QC mode; unknown values fail with one line listing the modes. ``source`` names where a mode read
    from a file came from (e.g. ``"out/pool.csv: row 2, field 'mode'"``); without it the error names ``--mode``."""
    mode = str(value).strip().lower() if value is not None else ""
    if mode not in MODES:
        where = f"{source}: mode" if source else "--mode"
        raise CrowdboxesError(f"{where} {value!r} is not a mode; choose one of {', '.join(MODES)}")
    return mode


def parse_verdict_method(value: object) -> str:
    """The verdict method (majority when none); unknown values fail with one line listing the methods."""
    method = "majority" if is_none(value) else str(value).strip().lower()
    if method not in VERDICT_METHODS:
        raise CrowdboxesError(f"--verdict_method {value!r} is not a method; choose one of {', '.join(VERDICT_METHODS)}")
    return method


def _positive_int(name: str, value: Any, default: int) -> int:
    if is_none(value):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CrowdboxesError(f"--{name} {value!r} is not a whole number") from None
    if not math.isfinite(number) or number != int(number):
        raise CrowdboxesError(f"--{name} {value!r} is not a whole number")
    if number < 1:
        raise CrowdboxesError(f"--{name} {value!r} must be at least 1")
    return int(number)


def _money(name: str, value: Any, allow_none: bool) -> float | None:
    if is_none(value):
        if allow_none:
            return None
        raise CrowdboxesError(f"--{name} is required (a USD amount)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CrowdboxesError(f"--{name} {value!r} is not a USD amount") from None
    if not math.isfinite(number) or number < 0:
        raise CrowdboxesError(f"--{name} {value!r} must be a non-negative USD amount")
    return number


# ---------------------------------------------------------------------------------------------
# The drawer-skill filter: drawers must never verify.

def _skill_condition_excludes(cond: dict, drawer_keys: set[str]) -> bool:
    """True if ``cond`` admits only workers WITHOUT the drawer skill."""
    if not isinstance(cond, dict) or cond.get("category") != "skill":
        return False
    if str(cond.get("key")) not in drawer_keys:
        return False
    op, value = cond.get("operator"), cond.get("value", "missing")
    # skill == None: no skill at all. (skill < 1 would also admit workers without the skill value 0;
    # the drawer skill is set to 1, so "LT 1" is accepted too.)
    return (op == "EQ" and value is None) or (op == "LT" and value is not None and float(value) <= 1)


def filter_excludes_drawers(filter_json: object, drawer_keys: Iterable[object]) -> bool:
    """True if every worker passing ``filter_json`` (toloka-kit filter JSON) lacks the drawer skill.

    The condition must hold conjunctively: a top-level condition, a member of a top-level ``and``,
    or an ``or`` whose every branch carries it. A drawer-skill condition inside an ``or`` next to
    other conditions does not count: a drawer could pass through the other branch.
    """
    keys = {str(k) for k in drawer_keys}
    if not isinstance(filter_json, dict):
        return False
    if "and" in filter_json:
        return any(filter_excludes_drawers(part, keys) for part in filter_json["and"] or [])
    if "or" in filter_json:
        branches = filter_json["or"] or []
        return bool(branches) and all(filter_excludes_drawers(part, keys) for part in branches)
    return _skill_condition_excludes(filter_json, keys)


def check_verification_pool_config(config: dict[str, Any], path: str | os.PathLike,
                                   drawer_skill_id: str | None = None) -> dict[str, Any]:
    """Refuse a verification pool config that would let drawers verify; returns ``config``."""
    keys = {SKILL_PLACEHOLDER + DRAWER_SKILL_ROLE}
    if drawer_skill_id is not None:
        keys.add(str(drawer_skill_id))
    if not filter_excludes_drawers(config.get("filter"), keys):
        raise CrowdboxesError(f"{path}: 'filter' must exclude drawers, e.g. "
                        f'{{"category": "skill", "key": "{SKILL_PLACEHOLDER}{DRAWER_SKILL_ROLE}", '
                        f'"operator": "EQ", "value": null}} (drawers must never verify their own work)')
    reward = config.get("reward_per_assignment")
    try:
        ok = reward is not None and float(reward) >= MIN_REWARD
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CrowdboxesError(f"{path}: 'reward_per_assignment' {reward!r} must be a USD amount of at least {MIN_REWARD}")
    return config


LOOP_OWNED_ACTIONS = {"CHANGE_OVERLAP"}
LOOP_OWNED_CONDITIONS = {"rejected_assignments_rate", "accepted_assignments_rate"}


def for_verification_loop(config: dict) -> dict:
    """A copy of a detection pool config without the rules the verification loop replaces (verify modes).

    * CHANGE_OVERLAP: the loop owns each image's overlap (absolute targets, at most ``--max_attempts``
      drawings per slot). A rule that raises it on every rejection opens a slot in the same moment as the
      rejection, so a worker can take it before the loop caps it: the attempts limit would not hold.
    * restrictions keyed on the share of rejected (or accepted) assignments: the loop rejects every
      drawing its verifiers find incomplete, which on busy photos is about half of a careful drawer's
      work, so Toloka's usual "over 35 % rejected" rule would restrict most of the good crowd (measured:
      27 of 40 workers) and leave images nobody may redraw. The loop bans drawers itself (mostly
      rejected drawings, control-task F1).

    Quality-control configs left without rules are dropped.
    """
    out = copy.deepcopy(config)

    def owned(rule: dict[str, Any]) -> bool:
        return ((rule.get("action") or {}).get("type") in LOOP_OWNED_ACTIONS
                or any(c.get("key") in LOOP_OWNED_CONDITIONS for c in rule.get("conditions") or []))

    configs = []
    for qc in (out.get("quality_control") or {}).get("configs") or []:
        rules = [r for r in qc.get("rules") or [] if not owned(r)]
        if rules:
            configs.append({**qc, "rules": rules})
    if out.get("quality_control"):
        out["quality_control"] = {**out["quality_control"], "configs": configs}
    return out


def resolve_skill_placeholders(config: Any, skill_ids: dict[str, str]) -> Any:
    """A copy of ``config`` with every ``"$<role>"`` string replaced by ``skill_ids[role]``.

    An unknown role fails naming it, so a config never reaches Toloka with a placeholder in it.
    """
    if isinstance(config, dict):
        return {k: resolve_skill_placeholders(v, skill_ids) for k, v in config.items()}
    if isinstance(config, list):
        return [resolve_skill_placeholders(v, skill_ids) for v in config]
    if isinstance(config, str) and config.startswith(SKILL_PLACEHOLDER):
        role = config[len(SKILL_PLACEHOLDER):]
        if role not in skill_ids:
            raise CrowdboxesError(f"pool config refers to skill {config!r} but projects.csv has no role {role!r}")
        return str(skill_ids[role])
    return config


# ---------------------------------------------------------------------------------------------

@attr.s(frozen=True, auto_attribs=True)
class QualitySettings:
    """Checked QC settings shared by launch_pool (creation, estimate) and wait_pool (the loop).

    ``budget`` is the USD cap for all pools together (None = no cap). ``verification_pool_config``
    is the parsed ``configs/verification_pool.json`` when the mode verifies, else None.
    """

    mode: str = "overlap"
    verifiers: int = 3
    max_attempts: int = 3
    verdict_method: str = "majority"
    budget: float | None = None
    detection_reward: float | None = None
    verification_pool_config: dict | None = None
    verification_pool_path: str | None = None

    @property
    def verifies(self) -> bool:
        return "verify" in self.mode

    @property
    def verification_reward(self) -> float | None:
        if not self.verification_pool_config:
            return None
        return float(self.verification_pool_config["reward_per_assignment"])


def parse_settings(mode: object = "overlap", verifiers: object = None, max_attempts: object = None,
                   verdict_method: object = None, budget: object = None, reward: object = None, config_dir: str | os.PathLike | None = None,
                   verification_pool_path: str | os.PathLike | None = None,
                   drawer_skill_id: str | None = None) -> QualitySettings:
    """Parse step parameters (strings as cnvrg passes them, or typed values) into QualitySettings.

    Raises CrowdboxesError (one line) on the first bad value. Nothing touches Toloka.
    """
    mode = parse_mode(mode)
    method = parse_verdict_method(verdict_method)
    n_verifiers = _positive_int("verifiers", verifiers, 3)
    attempts = _positive_int("max_attempts", max_attempts, 3)
    cap = _money("budget", budget, allow_none=True)
    det_reward = _money("reward", reward, allow_none=True)
    if det_reward is not None and det_reward < MIN_REWARD:
        raise CrowdboxesError(f"--reward {reward!r} is below Toloka's minimum of ${MIN_REWARD} per assignment")

    pool_config, pool_path = None, None
    if "verify" in mode:
        if verification_pool_path is None:
            if config_dir is None:
                raise CrowdboxesError(f"--mode {mode} needs --config_dir with {VERIFICATION_POOL_CONFIG.file_name}")
            verification_pool_path = VERIFICATION_POOL_CONFIG.path(config_dir)
        pool_path = str(verification_pool_path)
        pool_config = check_verification_pool_config(read_json_object(pool_path, "config"), pool_path, drawer_skill_id)

    if cap is not None and det_reward is not None:
        cheapest = assignment_price(det_reward)
        if cap < cheapest - 1e-9:
            raise CrowdboxesError(f"--budget {budget!r} is below the price of one assignment "
                                  f"(${det_reward:g} reward + ${toloka_fee(det_reward):g} fee = ${cheapest:.4f})")
        if pool_config is not None:
            pair = assignment_price(det_reward) + assignment_price(float(pool_config["reward_per_assignment"]))
            if cap < pair - 1e-9:
                raise CrowdboxesError(f"--budget {budget!r} cannot pay for one drawing and its verification "
                                f"(${pair:.4f} with fees)")
    return QualitySettings(mode=mode, verifiers=n_verifiers, max_attempts=attempts, verdict_method=method,
                           budget=cap, detection_reward=det_reward, verification_pool_config=pool_config,
                           verification_pool_path=pool_path)


def loop_settings(verifiers: object = None, max_attempts: object = None, verdict_method: object = None,
                  budget: object = None, mode: object = "verify") -> QualitySettings:
    """The settings the verification loop needs (wait_pool's parameters), checked the same way."""
    return QualitySettings(mode=parse_mode(mode), verifiers=_positive_int("verifiers", verifiers, 3),
                           max_attempts=_positive_int("max_attempts", max_attempts, 3),
                           verdict_method=parse_verdict_method(verdict_method),
                           budget=_money("budget", budget, allow_none=True))
