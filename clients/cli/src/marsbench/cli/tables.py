"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from marsbench.schemas.models import ModelInfo
from marsbench.schemas.runs import RunRecord

LANDFORM_COLUMNS = ("mAP", "r_precision", "ndcg@10", "hit@10")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    line = "  ".join("-" * width for width in widths)

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([fmt(headers), line, *(fmt(row) for row in rows)])


def _x100(values: Mapping[str, float], columns: Sequence[str]) -> list[str]:
    return [f"{100 * values[column]:.2f}" for column in columns]


def landform_table(record: RunRecord) -> str:
    """Per-class rows and the mean row, x100 as the benchmark reports them."""
    rows = [[name, *_x100(metrics, LANDFORM_COLUMNS)] for name, metrics in sorted(record.per_class.items())]
    rows.append(["mean", *_x100(record.metrics, LANDFORM_COLUMNS)])
    return render_table(["class", *LANDFORM_COLUMNS], rows)


GEO_COLUMNS = ("f1", "precision", "recall", "auprc")


def geo_table(records: Sequence[RunRecord]) -> str:
    """One row per (landform, query mode): parity best F1 with its k, precision, recall, AUPRC (x100),
    and beside them the exact curve's AUPRC (every k, not the reference's grid)."""
    rows = [
        [
            record.landform or "",
            str(record.query_mode or ""),
            *_x100(record.metrics, GEO_COLUMNS),
            str(int(record.metrics["k"])),
            f"{100 * record.variants['exact']['auprc']:.2f}" if "exact" in record.variants else "",
        ]
        for record in records
    ]
    return render_table(["landform", "query", *GEO_COLUMNS, "k", "auprc (exact)"], rows)


PAIRED_COLUMNS = ("r1", "r10", "medr", "mrr")


def paired_table(record: RunRecord) -> str:
    """Image-to-text and text-to-image rows: R@1, R@10, MRR x100 and MedR as a rank."""
    rows = []
    for direction, label in (("i2t", "image -> text"), ("t2i", "text -> image")):
        m = record.metrics
        medr = m[f"{direction}_medr"]
        rows.append(
            [
                label,
                f"{100 * m[f'{direction}_r1']:.2f}",
                f"{100 * m[f'{direction}_r10']:.2f}",
                f"{medr:g}",
                f"{100 * m[f'{direction}_mrr']:.2f}",
            ]
        )
    return render_table(["direction", "R@1", "R@10", "MedR", "MRR"], rows)


def models_table(cards: Sequence[ModelInfo]) -> str:
    """One row per model: what it embeds, where its weights come from, whether it is ready."""
    rows = [
        [
            card.id,
            "+".join(m.value for m in card.modalities),
            card.family,
            card.source or "",
            (card.revision or "unpinned")[:12],
            str(card.dimension or "?"),
            card.status,
        ]
        for card in cards
    ]
    return render_table(["model", "embeds", "family", "source", "revision", "dim", "status"], rows)
