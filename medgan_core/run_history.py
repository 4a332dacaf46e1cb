"""What a run's ``metrics.jsonl`` says, for people: rounds, refusals, the last round.

Pure functions of the records the ServerApp's ``RunRecorder`` writes, shared by
``medgan status`` (a simulation), ``medgan coordinator status`` (a deployment) and the
report, so that all three read and word a run the same way.
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_history", "history_summary", "refusal_summary", "unit_text"]


def refusal_summary(history: list[dict]) -> dict:
    """Refusals in ``metrics.jsonl``: total, by fixed code, and per round."""
    by_code: dict[str, int] = {}
    rounds = []
    for h in history:
        codes = [str(reason).split(": ")[0] for reason in (h.get("refusals") or {}).values()]
        for code in codes:
            by_code[code] = by_code.get(code, 0) + 1
        if codes:
            rounds.append({"round": h["round"], "refused": len(codes), "trained": h.get("trained", 0),
                           "codes": sorted(set(codes))})
    return {"total": sum(by_code.values()), "by_code": by_code, "rounds": rounds}


def history_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``metrics.jsonl`` (the ServerApp's ``RunRecorder``) says: rounds, refusals, last round.

    Args:
        history: The records of ``metrics.jsonl``, in order (``RunDirectory.read_metrics``).

    Returns:
        ``rounds_recorded``, ``refusals`` (:func:`refusal_summary`) and
        ``last_round`` (its number, how many sites trained, the aggregated train metrics).
    """
    last = history[-1] if history else {}
    return {
        "rounds_recorded": len(history),
        "refusals": refusal_summary(history),
        "last_round": {"round": last.get("round"), "trained": last.get("trained"), "train": last.get("train")},
    }


def unit_text(unit: str | None, record_word: str = "record") -> str:
    """What one unit of a site's (epsilon, delta) protects, in words. ``record_word`` names one record of
    the run's modality ("beat", "image")."""
    return "patient" if unit == "patient" else f"{record_word} (one record)"


def format_history(summary: dict[str, Any]) -> list[str]:
    """The refusal and last-round lines of a :func:`history_summary`, indented under a run."""
    lines = []
    refusals = summary["refusals"]
    if refusals["total"]:
        lines.append(f"  refusals: {refusals['total']} ({', '.join(f'{c} x{n}' for c, n in refusals['by_code'].items())})"
                     + "".join(f"; round {r['round']}: {r['refused']} refused, {r['trained']} trained"
                               for r in refusals["rounds"]))
    else:
        lines.append("  refusals: none")
    last = summary["last_round"]
    if last["round"] is not None:
        train = ", ".join(f"{k} {v:.4g}" for k, v in (last["train"] or {}).items() if isinstance(v, (int, float)))
        lines.append(f"  last round {last['round']}: {last['trained']} site(s) trained; {train or 'no train metrics'}")
    return lines
