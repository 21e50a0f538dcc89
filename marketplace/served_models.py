"""The catalog of served models (marketplace/data/served_models.csv, from the publishers' model cards).

Parsing and an idempotent loader taking the model class, so the data migration (historical model) and the tests
(after a transactional flush) load the same rows. ``context_tokens`` is the native context; ``note`` says more.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

CSV_PATH = Path(__file__).resolve().parent / "data" / "served_models.csv"


def rows() -> list[dict[str, Any]]:
    with CSV_PATH.open(encoding="utf-8", newline="") as handle:
        return [
            {
                "name": row["name"].strip(),
                "publisher": row["publisher"].strip(),
                "parameters_b": Decimal(row["parameters_b"]),
                "active_parameters_b": Decimal(row["active_parameters_b"]) if row["active_parameters_b"] else None,
                "context_tokens": int(row["context_tokens"]),
                "license": row["license"].strip(),
                "source_url": row["source"].strip(),
            }
            for row in csv.DictReader(handle)
        ]


def load(served_model_class: Any) -> int:
    """Create or update every row (by name). Returns how many rows the CSV has."""
    data = rows()
    for row in data:
        name = row.pop("name")
        served_model_class.objects.update_or_create(name=name, defaults=row)
    return len(data)
