"""``validation.csv``: one row per validation epoch with every metric, for curves and stability tables."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from ignite.engine import Engine, Events

from monai_wsseg.utils.atomic import write_text_atomically

__all__ = ["ValidationTable"]


class ValidationTable:
    """Attach to an evaluator: after each of its runs, (re)write ``path`` with a row ``epoch, <metrics>``.

    The epoch is the evaluator's ``state.epoch`` (MONAI's ``ValidationHandler`` sets it to the trainer's
    epoch). Rows of earlier runs in the file are kept, so a resumed training continues the table; a row of
    the same epoch is replaced. Written to a temporary name and renamed, so the file is never half-written.
    Non-finite values are written as empty cells.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def attach(self, engine: Engine) -> None:
        """Write the table after every run (``EPOCH_COMPLETED``) of ``engine``."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as fh:
            return list(csv.DictReader(fh))

    def __call__(self, engine: Engine) -> None:
        """Add or replace the row of ``engine.state.epoch`` with its numeric metrics, and rewrite the file."""
        epoch = int(engine.state.epoch)
        row = {"epoch": str(epoch)}
        for name, value in engine.state.metrics.items():
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            row[name] = f"{v:.6f}" if math.isfinite(v) else ""
        rows = [r for r in self._rows() if r.get("epoch") != str(epoch)] + [row]
        rows.sort(key=lambda r: int(r["epoch"]))
        fields = ["epoch", *sorted({k for r in rows for k in r} - {"epoch"})]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.path, text.getvalue())
