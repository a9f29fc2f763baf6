"""What a validation did, for a person to read before any metric: rows read, kept, repaired, flagged and
quarantined per source (`recsys.data.validation` makes it)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ValidationReport"]


@dataclass(frozen=True)
class ValidationReport:
    """Counts of rows read, kept, fixed and quarantined per source and reason."""

    rows_read: dict[str, int]
    rows_kept: dict[str, int]
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> reason -> count
    fixed: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> fix -> count
    flagged: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> fact -> count (kept, worth knowing)
    quarantine_path: str | None = None
    repaired_path: str | None = None  # raw bytes of the lines whose invalid bytes were replaced
    notes: tuple[str, ...] = ()  # what a loader assumed or derived (e.g. timestamps derived from event order)

    @property
    def n_quarantined(self) -> int:
        return sum(sum(v.values()) for v in self.quarantined.values())

    def summary_lines(self) -> list[str]:
        """What a person should read before the metrics: rows kept per source, rows quarantined per reason and where
        they were written, what was repaired, and what the loader assumed."""
        lines = []
        for source, read in self.rows_read.items():
            kept = self.rows_kept.get(source, read)
            q = self.quarantined.get(source, {})
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(q.items()))
            lines.append(f"{source}: {kept} of {read} rows kept" + (f"; quarantined {why}" if why else ""))
            fixes = ", ".join(f"{n} {fix}" for fix, n in sorted(self.fixed.get(source, {}).items()) if n)
            if fixes:
                lines.append(f"{source}: repaired {fixes}")
            flags = ", ".join(f"{n} {fact}" for fact, n in sorted(self.flagged.get(source, {}).items()) if n)
            if flags:
                lines.append(f"{source}: kept, but note {flags}")
        if any(v.get("replaced_invalid_text") for v in self.fixed.values()):
            lines.append(
                f"raw lines of the repaired text: {self.repaired_path or 'give --quarantine-dir to keep them'}"
            )
        if self.n_quarantined:
            where = self.quarantine_path or "not written (give --quarantine-dir to keep them)"
            lines.append(f"{self.n_quarantined} quarantined row(s): {where}")
        return [*lines, *self.notes]

    def to_dict(self) -> dict[str, object]:
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "quarantined": self.quarantined,
            "fixed": self.fixed,
            "flagged": self.flagged,
            "n_quarantined": self.n_quarantined,
            "quarantine_path": self.quarantine_path,
            "repaired_path": self.repaired_path,
            **({"notes": list(self.notes)} if self.notes else {}),
        }
