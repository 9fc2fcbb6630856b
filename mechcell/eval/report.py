"""Recovery reports: a markdown file with the per-condition table and PNG plots (matplotlib, Agg backend).

Why files beside the printed table: a report is what a reader keeps — `recovery.md` links the plots
`recovery_pr.png` (edge precision and recall per condition) and `recovery_verdicts.png` (the verdict mix of each
final graph), and states the edge-matching definition it was computed with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mechcell.eval.recovery import ConditionRecovery, RecoveryResult

__all__ = ["fmt", "plot_precision_recall", "plot_verdicts", "summary_lines", "write_recovery_report"]

_STATUSES = ("supported", "inconclusive", "contradicted", "uncheckable")
_COLOURS = {"supported": "#2e7d32", "inconclusive": "#f9a825", "contradicted": "#c62828", "uncheckable": "#9e9e9e"}


def fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _yn(x: bool | None) -> str:
    return "—" if x is None else ("yes" if x else "no")


def _cell(text: str) -> str:
    """Text for a markdown table cell: pipes escaped (also inside code spans, as GFM requires)."""
    return text.replace("|", "\\|").replace("\n", " ")


def _short(key: str) -> str:
    parts = key.split("|")
    return " ".join(p for p in parts[:3] if p and p != "-")


def plot_precision_recall(rows: Sequence[ConditionRecovery], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_short(r.key) for r in rows]
    prec = [r.precision if r.precision is not None else 0.0 for r in rows]
    rec = [r.recall if r.recall is not None else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.2))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], prec, width=0.4, label="edge precision", color="#1565c0")
    ax.bar([i + 0.2 for i in x], rec, width=0.4, label="edge recall", color="#90caf9")
    for i, r in enumerate(rows):
        if not r.active:
            ax.text(i, 0.02, "inactive", rotation=90, ha="center", va="bottom", fontsize=7, color="#555")
    ax.axhline(0.9, color="#1565c0", lw=0.8, ls="--")
    ax.axhline(0.7, color="#64b5f6", lw=0.8, ls=":")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("share of edges")
    ax.set_title("Planted-mechanism recovery per condition")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_verdicts(rows: Sequence[ConditionRecovery], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_short(r.key) for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.2))
    bottom = [0.0] * len(rows)
    for s in _STATUSES:
        vals = [float(r.counts.get(s, 0)) for r in rows]
        ax.bar(range(len(rows)), vals, bottom=bottom, label=s, color=_COLOURS[s])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(list(range(len(rows))))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("claims of the final graph")
    ax.set_title("Verdict mix of each final graph")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary_lines(result: RecoveryResult) -> list[str]:
    s = result.summary
    return [
        f"- conditions: {s.n_conditions} ({s.n_active} active, {s.n_with_trace} with a trace)",
        f"- edge precision (mean per condition): **{fmt(s.edge_precision)}** (micro {fmt(s.micro_precision)})",
        f"- edge recall (mean per active condition): **{fmt(s.edge_recall)}** (micro {fmt(s.micro_recall)})",
        f"- mechanism edges: precision {fmt(s.mech_precision)}, recall {fmt(s.mech_recall)}; "
        f"gene edges: precision {fmt(s.gene_precision)}, recall {fmt(s.gene_recall)}",
        f"- factual precision (knowledge verifier): {fmt(s.factual_precision)}; expression precision: "
        f"{fmt(s.expression_precision)}",
        f"- planted target → TF → gene path recovered: {fmt(s.path_recovery)} of active conditions",
        f"- inactive conditions left without a claim: {fmt(s.inactive_abstention)}; decoy targets bound: "
        f"{fmt(s.decoy_bound)} of decoy-drug conditions",
        f"- final graphs accepted by the panel: {fmt(s.accepted)}",
        "- edge recall by effect size: "
        + "; ".join(f"{k} {fmt(v)} (n={s.n_by_effect.get(k, 0)})" for k, v in s.recall_by_effect.items()),
    ]


def write_recovery_report(
    result: RecoveryResult,
    out_dir: str | Path,
    *,
    title: str = "Mechanism recovery",
    preamble: Sequence[str] = (),
    name: str = "recovery",
) -> Path:
    """Write `<name>.md` and its two PNG plots into `out_dir`; returns the markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = result.rows
    pr = plot_precision_recall(rows, out / f"{name}_pr.png") if rows else None
    vm = plot_verdicts(rows, out / f"{name}_verdicts.png") if rows else None
    lines = [f"# {title}", ""]
    lines += list(preamble)
    if preamble:
        lines.append("")
    lines += [f"World seed {result.world_seed}, KB {result.kb_version}.", "", "## Summary", ""]
    lines += summary_lines(result)
    lines += ["", "## Per condition", ""]
    lines.append(
        "| condition | active | status | verified mechanism | edge P | edge R | factual P | expression P "
        "| planted path |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mech = _cell(r.summary) or "—"
        lines.append(
            f"| `{_cell(r.key)}` | {_yn(r.active)} | {r.status} | {mech} | {fmt(r.precision)} | {fmt(r.recall)} | "
            f"{fmt(r.factual_precision)} | {fmt(r.expression_precision)} | {_yn(r.path_recovered)} |"
        )
    if pr is not None and vm is not None:
        lines += ["", "## Plots", "", f"![precision and recall]({pr.name})", "", f"![verdict mix]({vm.name})"]
    lines += ["", "## How edges are matched", "", result.definition, ""]
    path = out / f"{name}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
