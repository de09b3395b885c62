"""Inter-rater agreement and position bias for the admin page.

An *item* is one query's answers from different raters: a sequence of category values (pairwise
choices ``"A"``/``"B"``/``"tie"``, Likert ratings 1-5, or a per-token mark). Items with fewer than two
answers carry no information about agreement and are left out by every statistic here.

- :func:`percent_agreement`: the chance that two different raters of the same item agree, averaged
  over items (Fleiss' :math:`\\bar P`).
- :func:`fleiss_kappa`: Fleiss (1971), chance-corrected with the pooled category shares. Items may
  have different numbers of raters (each item's :math:`P_i` uses its own :math:`n_i`); with the same
  number everywhere it is exactly Fleiss' statistic.
- :func:`krippendorff_alpha`: Krippendorff's alpha (nominal, ordinal or interval) from the coincidence
  matrix; it handles missing answers and any number of raters per item.
- :func:`position_bias`: how often the completion shown on the left won among decisive answers
  (0.5 when raters ignore position; the swap is random per query and rater).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

METRICS = ("nominal", "ordinal", "interval")


def _usable(items: Sequence[Sequence[Hashable]]) -> list[list[Hashable]]:
    return [list(x) for x in items if len(x) >= 2]


def percent_agreement(items: Sequence[Sequence[Hashable]]) -> float:
    """Mean over items (with >= 2 answers) of the share of ordered rater pairs that agree; NaN if none."""
    its = _usable(items)
    if not its:
        return math.nan
    tot = 0.0
    for x in its:
        n = len(x)
        tot += sum(c * (c - 1) for c in Counter(x).values()) / (n * (n - 1))
    return tot / len(its)


def fleiss_kappa(items: Sequence[Sequence[Hashable]]) -> float:
    """Fleiss' kappa over items with >= 2 answers: ``(P - Pe) / (1 - Pe)``; NaN if undefined.

    ``P`` is :func:`percent_agreement`; ``Pe = sum_j p_j**2`` with ``p_j`` the share of all answers
    in category ``j``. NaN when there are no usable items or every answer is in one category.
    """
    its = _usable(items)
    if not its:
        return math.nan
    p_bar = percent_agreement(its)
    counts = Counter(v for x in its for v in x)
    total = sum(counts.values())
    pe = sum((c / total) ** 2 for c in counts.values())
    if pe >= 1.0 - 1e-12:
        return math.nan
    return (p_bar - pe) / (1.0 - pe)


def krippendorff_alpha(items: Sequence[Sequence[Any]], metric: str = "nominal") -> float:
    """Krippendorff's alpha over items (each the answers to one unit; None entries are missing).

    ``alpha = 1 - (n - 1) * sum_ck o_ck d_ck / sum_ck n_c n_k d_ck`` with the coincidence matrix
    ``o_ck = sum_u (pairs of values c, k in unit u) / (m_u - 1)``, ``n_c`` its margins, ``n`` the number
    of pairable values, and ``d_ck`` the metric's squared difference: nominal ``c != k``; interval
    ``(c - k)**2``; ordinal ``(sum_{g=c..k} n_g - (n_c + n_k) / 2)**2``. NaN when undefined (no
    pairable values, or one value only).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    units = [[v for v in x if v is not None] for x in items]
    units = [u for u in units if len(u) >= 2]
    if not units:
        return math.nan
    o: Counter[tuple[Any, Any]] = Counter()
    for u in units:
        m = len(u)
        cu = Counter(u)
        for c, nc in cu.items():
            for k, nk in cu.items():
                pairs = nc * (nc - 1) if c == k else nc * nk
                if pairs:
                    o[(c, k)] += pairs / (m - 1)
    nc_: Counter[Any] = Counter()
    for (c, _k), v in o.items():
        nc_[c] += v
    n = sum(nc_.values())
    values = sorted(nc_)
    if len(values) < 2:
        return math.nan

    def delta(c: Any, k: Any) -> float:
        if metric == "nominal":
            return 0.0 if c == k else 1.0
        if metric == "interval":
            return (float(c) - float(k)) ** 2
        lo, hi = sorted((values.index(c), values.index(k)))
        s = sum(nc_[values[g]] for g in range(lo, hi + 1))
        return (s - (nc_[c] + nc_[k]) / 2.0) ** 2

    d_o = sum(v * delta(c, k) for (c, k), v in o.items())
    d_e = sum(nc_[c] * nc_[k] * delta(c, k) for c in values for k in values)
    if d_e == 0:
        return math.nan
    return 1.0 - (n - 1) * d_o / d_e


def position_bias(answers: Sequence[tuple[str | None, bool]]) -> dict[str, float]:
    """Share of decisive pairwise answers that chose the completion shown on the left.

    ``answers``: ``(choice, swapped)`` pairs, choice in canonical terms (``"A"``/``"B"``; ties and
    skips are ignored), ``swapped`` True when B was shown on the left. Returns ``n``,
    ``left_share`` (NaN when n = 0) and its binomial standard error ``se``.
    """
    left = [(c == "A") != bool(s) for c, s in answers if c in ("A", "B")]
    n = len(left)
    if n == 0:
        return {"n": 0, "left_share": math.nan, "se": math.nan}
    p = sum(left) / n
    return {"n": n, "left_share": p, "se": math.sqrt(p * (1 - p) / n)}


def agreement_report(answers: Sequence[Any], kinds: dict[int, str]) -> dict[str, Any]:
    """The admin page's agreement section from :class:`~agents.human.store.Answer` rows.

    ``kinds`` maps query id to kind. Pairwise: choices A/B/tie per query (skips are missing);
    rating: Likert values per query; per-token: one unit per (query, token) with each rater's mark
    (unmarked tokens count as neutral, 0) over the tokens anyone marked.
    """
    pair: dict[int, list[str]] = {}
    rate: dict[int, list[int]] = {}
    tok: dict[int, list[dict[int, int]]] = {}
    bias = []
    for a in answers:
        k = kinds.get(a.query_id)
        if k == "pairwise":
            if a.choice != "skip":
                pair.setdefault(a.query_id, []).append(a.choice)
            bias.append((a.choice, a.swapped))
        elif k == "rating" and a.rating is not None:
            rate.setdefault(a.query_id, []).append(int(a.rating))
        elif k == "per_token" and a.choice != "skip":
            tok.setdefault(a.query_id, []).append(dict(a.marks))
    token_units = []
    for marks in tok.values():
        if len(marks) < 2:
            continue
        for i in sorted(set().union(*marks)):
            token_units.append([m.get(i, 0) for m in marks])
    p_items = list(pair.values())
    r_items = list(rate.values())
    return {
        "pairwise": {
            "queries_with_2plus": len(_usable(p_items)),
            "percent_agreement": percent_agreement(p_items),
            "fleiss_kappa": fleiss_kappa(p_items),
            "krippendorff_alpha_nominal": krippendorff_alpha(p_items, "nominal"),
        },
        "rating": {
            "queries_with_2plus": len(_usable(r_items)),
            "percent_agreement": percent_agreement(r_items),
            "krippendorff_alpha_interval": krippendorff_alpha(r_items, "interval"),
        },
        "per_token": {
            "tokens_with_2plus": len(token_units),
            "percent_agreement": percent_agreement(token_units),
            "krippendorff_alpha_nominal": krippendorff_alpha(token_units, "nominal"),
        },
        "position_bias": position_bias(bias),
    }
