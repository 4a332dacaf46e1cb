"""What a loader found: records used, records skipped and why."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medgan_core.errors import InvalidRecordError

__all__ = ["DataReport"]


@dataclass
class DataReport:
    """Counts of loaded and skipped inputs, kept beside every run."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    class_counts: Counter = field(default_factory=Counter)

    def add_loaded(self, path: str | Path, labels: list[str] | None = None) -> None:
        self.loaded.append(str(path))
        if labels:
            self.class_counts.update(labels)

    def add_skipped(self, error: InvalidRecordError) -> None:
        self.skipped.append({"path": error.path, "reason": error.reason, "fix": error.fix})

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def merge(self, other: "DataReport") -> "DataReport":
        return DataReport(
            loaded=self.loaded + other.loaded,
            skipped=self.skipped + other.skipped,
            class_counts=self.class_counts + other.class_counts,
        )

    def to_dict(self) -> dict:
        return {
            "num_loaded": len(self.loaded),
            "num_skipped": self.num_skipped,
            "class_counts": dict(sorted(self.class_counts.items())),
            "loaded": self.loaded,
            "skipped": self.skipped,
        }

    def summary(self) -> str:
        lines = [
            f"{len(self.loaded)} loaded, {self.num_skipped} skipped; classes: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.class_counts.items()))
        ]
        lines += [f"  skipped {s['path']}: {s['reason']} (fix: {s['fix']})" for s in self.skipped]
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        from medgan_core.io_utils import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))
