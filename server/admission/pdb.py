"""PodDisruptionBudget status conditions (upstream ``pdbhelper``), shared by the Eviction API,
which spends ``disruptionsAllowed``, and the disruption controller, which recomputes it."""

from __future__ import annotations

from datetime import datetime

from edgek.objects import Obj
from edgek.timefmt import format_time

CONDITION = "DisruptionAllowed"


def set_condition(status: Obj, cond: Obj, now: datetime) -> None:
    """apimeta.SetStatusCondition: replace by type; the transition time moves only when the
    status changes."""
    conditions: list[Obj] = status.setdefault("conditions", [])
    for existing in conditions:
        if existing.get("type") == cond["type"]:
            if existing.get("status") != cond["status"]:
                existing["status"] = cond["status"]
                existing["lastTransitionTime"] = format_time(now)
            for field in ("reason", "message", "observedGeneration"):
                existing[field] = cond[field]
            return
    conditions.append({**cond, "lastTransitionTime": format_time(now)})


def update_disruption_allowed_condition(status: Obj, now: datetime) -> None:
    """pdbhelper.UpdateDisruptionAllowedCondition: SufficientPods while disruptions are
    allowed, InsufficientPods otherwise."""
    allowed = int(status.get("disruptionsAllowed") or 0) > 0
    set_condition(
        status,
        {
            "type": CONDITION,
            "status": "True" if allowed else "False",
            "reason": "SufficientPods" if allowed else "InsufficientPods",
            "message": "",
            "observedGeneration": int(status.get("observedGeneration") or 0),
        },
        now,
    )


def conditions_up_to_date(pdb: Obj) -> bool:
    """pdbhelper.ConditionsAreUpToDate."""
    status = pdb.get("status") or {}
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == CONDITION), None)
    if cond is None:
        return False
    if int(status.get("observedGeneration") or 0) != int(pdb["metadata"].get("generation") or 0):
        return False
    if int(status.get("disruptionsAllowed") or 0) > 0:
        return cond.get("status") == "True" and cond.get("reason") == "SufficientPods"
    return cond.get("status") == "False" and cond.get("reason") == "InsufficientPods"
