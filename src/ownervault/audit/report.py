"""The compliance report: one self-contained HTML page summarising the audit trail.

No external resources: styles inline, charts as inline SVG. It shows accesses per day by
purpose and by role, denials and their reasons, reveals of sensitive fields, the most active
actors and the log's verification status. It is built from audit entries only, so it contains
no personal value (subjects appear only as counts).
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..records import RECORD_TYPES, Classification

__all__ = ["ReportData", "collect", "render_html"]

_READS = frozenset({"read", "find"})
_PALETTE = ("#2f6db5", "#e08a1e", "#3a9a5b", "#c2413b", "#7b57b0", "#8c6d4f", "#d066a6", "#6b7b8c")


@attrs.frozen
class ReportData:
    """Aggregates computed from the audit entries."""

    total: int
    first: str
    last: str
    reads_by_day_purpose: Mapping[str, Mapping[str, int]]
    reads_by_day_role: Mapping[str, Mapping[str, int]]
    denials_by_day: Mapping[str, int]
    denial_reasons: Mapping[str, int]
    sensitive_reveals: Mapping[str, int]
    sensitive_by_actor: Mapping[str, int]
    top_actors: tuple[tuple[str, int], ...]
    subjects_touched: int


def _sensitive_fields(record_type: str | None, fields: Iterable[str]) -> list[str]:
    cls = RECORD_TYPES.get(record_type or "")
    if cls is None:
        return []
    specs = cls.field_specs()
    return [f for f in fields if f in specs and specs[f].classification is Classification.SENSITIVE]


def collect(entries: Iterable[Mapping[str, Any]]) -> ReportData:
    """Aggregate decoded audit entries."""
    by_purpose: dict[str, Counter[str]] = defaultdict(Counter)
    by_role: dict[str, Counter[str]] = defaultdict(Counter)
    denials: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    sensitive: Counter[str] = Counter()
    sensitive_actor: Counter[str] = Counter()
    actors: Counter[str] = Counter()
    subjects: set[str] = set()
    total = 0
    first = last = ""
    for entry in entries:
        total += 1
        time = str(entry.get("time", ""))
        first = first or time
        last = time
        day = time[:10]
        action = entry.get("action")
        if entry.get("decision") == "deny":
            denials[day] += 1
            reasons[str(entry.get("reason") or "unspecified")] += 1
            continue
        if action not in _READS or not entry.get("record_id"):
            continue
        by_purpose[day][str(entry.get("purpose"))] += 1
        for role in entry.get("roles") or ["?"]:
            by_role[day][str(role)] += 1
        actor = str(entry.get("actor"))
        actors[actor] += 1
        if entry.get("subject"):
            subjects.add(str(entry["subject"]))
        detail = entry.get("detail") or {}
        masked = set(str(detail.get("masked") or "").split(","))
        revealed = [f for f in entry.get("fields") or [] if f not in masked]
        for field in _sensitive_fields(entry.get("record_type"), revealed):
            sensitive[f"{entry.get('record_type')}.{field}"] += 1
            sensitive_actor[actor] += 1
    return ReportData(
        total=total,
        first=first,
        last=last,
        reads_by_day_purpose={d: dict(c) for d, c in sorted(by_purpose.items())},
        reads_by_day_role={d: dict(c) for d, c in sorted(by_role.items())},
        denials_by_day=dict(sorted(denials.items())),
        denial_reasons=dict(reasons.most_common()),
        sensitive_reveals=dict(sensitive.most_common()),
        sensitive_by_actor=dict(sensitive_actor.most_common(10)),
        top_actors=tuple(actors.most_common(10)),
        subjects_touched=len(subjects),
    )


def _count(n: int, noun: str) -> str:
    """``1 subject``, ``2 subjects``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _stacked_bars(title: str, series: Mapping[str, Mapping[str, int]]) -> str:
    """An inline SVG stacked bar chart: one bar per day, one colour per key."""
    if not series:
        return f"<h3>{html.escape(title)}</h3><p>No data.</p>"
    keys = sorted({k for counts in series.values() for k in counts})
    colours = {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(keys)}
    peak = max(sum(c.values()) for c in series.values()) or 1
    width, height, bar = 40 + 28 * len(series), 180, 20
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{height + 40}" '
        f'viewBox="0 0 {width} {height + 40}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (day, counts) in enumerate(series.items()):
        x, y = 30 + 28 * i, float(height)
        for key in keys:
            value = counts.get(key, 0)
            if not value:
                continue
            h = value * (height - 10) / peak
            y -= h
            parts.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" fill="{colours[key]}">'
                f"<title>{html.escape(day)} {html.escape(key)}: {value}</title></rect>"
            )
        parts.append(
            f'<text x="{x + bar / 2}" y="{height + 14}" font-size="9" text-anchor="middle">'
            f"{html.escape(day[5:])}</text>"
        )
    parts.append(f'<text x="2" y="12" font-size="10">{peak}</text></svg>')
    legend = " ".join(
        f'<span class="key"><span class="swatch" style="background:{c}"></span>'
        f"{html.escape(k)}</span>"
        for k, c in colours.items()
    )
    return f"<h3>{html.escape(title)}</h3>{''.join(parts)}<div class='legend'>{legend}</div>"


def _table(headers: tuple[str, str], rows: Iterable[tuple[str, int]]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in rows)
    if not body:
        body = "<tr><td colspan='2'>none</td></tr>"
    return (
        f"<table><tr><th>{html.escape(headers[0])}</th><th>{html.escape(headers[1])}</th></tr>"
        f"{body}</table>"
    )


def render_html(data: ReportData, *, vault_id: str, verification: str, verified: bool) -> str:
    """Render the report as one self-contained HTML page."""
    status_class = "ok" if verified else "bad"
    denials = {d: {"denied": n} for d, n in data.denials_by_day.items()}
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>ownervault compliance report — {html.escape(vault_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }} h3 {{ font-size: 1em; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}
.ok {{ color: #1d7a3a; }} .bad {{ color: #b3261e; font-weight: bold; }}
.legend .key {{ margin-right: 1em; font-size: .85em; }}
.swatch {{ display: inline-block; width: .8em; height: .8em; margin-right: .3em; }}
</style></head><body>
<h1>合规报告 Compliance report</h1>
<p>Vault <code>{html.escape(vault_id)}</code>; {data.total} audit entries from
{html.escape(data.first or "—")} to {html.escape(data.last or "—")}.</p>
<p class="{status_class}">审计日志校验 Audit log verification: {html.escape(verification)}</p>
<h2>访问 Accesses</h2>
<p>{_count(sum(sum(c.values()) for c in data.reads_by_day_purpose.values()), "record read")}
of {_count(data.subjects_touched, "subject")} (counted by pseudonym).</p>
{_stacked_bars("Reads per day by purpose", data.reads_by_day_purpose)}
{_stacked_bars("Reads per day by role", data.reads_by_day_role)}
<h2>拒绝 Denials</h2>
{_stacked_bars("Denials per day", denials)}
{_table(("reason", "count"), data.denial_reasons.items())}
<h2>敏感信息 Sensitive-field reveals</h2>
<p>Sensitive fields released in full (masked views are not counted).</p>
{_table(("field", "reveals"), data.sensitive_reveals.items())}
{_table(("actor", "sensitive reveals"), data.sensitive_by_actor.items())}
<h2>活跃用户 Top actors</h2>
{_table(("actor", "record reads"), data.top_actors)}
</body></html>
"""
