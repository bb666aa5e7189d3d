"""Verdicts: OK/BAD votes of verifiers aggregated per drawing, and what the drawer is told.

**Tie rule: an exact tie (P(OK) = P(BAD)) is BAD**: paying for a drawing nobody could vouch for is
worse than paying for one more drawing.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from crowdboxes.errors import CrowdboxesError

ACCEPT_COMMENT = "Thank you! Other workers checked your outlines and found them correct."
REJECT_COMMENTS = {
    "missed_sign": "Other workers found a road sign that was not outlined.",
    "loose_box": "Other workers found a rectangle that does not fit its road sign tightly.",
    "wrong_object": "Other workers found a rectangle around something that is not a road sign.",
    "wrong_class": "Other workers found a road sign with the wrong type.",
    "banned": "Your outlines on control photos with known road signs were far off, so this work was not accepted.",
    "": "Other workers found the outlines incomplete or incorrect.",
}
CONTROL_REJECT_COMMENT = "Your outlines on a control photo did not match its road signs."


def aggregate_verdicts(votes: pd.DataFrame, method: str = "majority", skills: pd.Series | None = None) -> pd.DataFrame:
    """Aggregate OK/BAD votes per task.

    Args:
        votes: columns ``task, worker, label`` (label OK|BAD), optionally ``reason``.
        method: ``majority`` (crowd-kit ``MajorityVote``, weighted by ``skills`` when given:
            :math:`P(OK) = \\sum_{w: OK} s_w / \\sum_w s_w`) or ``dawid_skene`` (crowd-kit
            ``DawidSkene`` over all tasks given, so it learns each verifier's confusion matrix).
        skills: Series by worker (any positive scale); missing workers get the mean skill.

    Returns:
        DataFrame indexed by task with ``verdict`` (OK|BAD; a tie is BAD), ``p_ok``,
        ``ok_votes``, ``bad_votes`` and ``reason`` (the most named reason among BAD votes).
    """
    from crowdkit.aggregation import DawidSkene, MajorityVote

    columns = ["verdict", "p_ok", "ok_votes", "bad_votes", "reason"]
    if votes.empty:
        return pd.DataFrame(columns=columns)
    probas: pd.DataFrame
    data = votes[["task", "worker", "label"]].astype({"task": str, "worker": str, "label": str})
    if method == "majority":
        if skills is not None and len(skills):
            skills = skills.astype(float).clip(lower=1e-6)
            skills.index = skills.index.astype(str)
            default = float(skills.mean())
        else:
            skills, default = None, None
        model = MajorityVote(on_missing_skill="value", default_skill=default or 1.0)
        probas = model.fit(data, skills).probas_
    elif method == "dawid_skene":
        probas = DawidSkene(n_iter=100).fit(data).probas_
    else:
        raise CrowdboxesError(f"unknown verdict method {method!r}")
    probas = probas.reindex(columns=["OK", "BAD"], fill_value=0.0).fillna(0.0)
    counts = data.groupby(["task", "label"]).size().unstack(fill_value=0).reindex(columns=["OK", "BAD"], fill_value=0)
    out = pd.DataFrame(index=probas.index)
    out["p_ok"] = probas["OK"]
    # the explicit tie rule: OK only with strictly more (weighted) support than BAD
    out["verdict"] = np.where(probas["OK"] - probas["BAD"] > 1e-9, "OK", "BAD")
    out["ok_votes"] = counts["OK"].reindex(out.index).fillna(0).astype(int)
    out["bad_votes"] = counts["BAD"].reindex(out.index).fillna(0).astype(int)
    reasons = {}
    if "reason" in votes.columns:
        bad = votes[(votes["label"] == "BAD") & votes["reason"].notna() & (votes["reason"].astype(str) != "")]
        for task, group in bad.groupby(bad["task"].astype(str)):
            reasons[task] = Counter(group["reason"].astype(str)).most_common(1)[0][0]
    out["reason"] = [reasons.get(t, "") if v == "BAD" else "" for t, v in zip(out.index, out["verdict"])]
    return out[columns]
