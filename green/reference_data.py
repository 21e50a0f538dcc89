"""Grid emission factors shipped with the project (green/data/grid_emission_factors.csv, with its source column).

Parsing only (no ORM): the data migration and the tests read the rows from here.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

from accounts.regions import PROVINCE_CODE_BY_EN

FACTORS_CSV = Path(__file__).resolve().parent / "data" / "grid_emission_factors.csv"
SCOPES = {"national": "national", "grid": "grid_region", "province": "province"}


def factor_rows() -> list[dict[str, Any]]:
    rows = []
    with FACTORS_CSV.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            scope = SCOPES[row["scope"]]
            code = row["region_code"]
            if scope == "province":
                code = PROVINCE_CODE_BY_EN[code]  # the CSV names provinces in English; sites use GB/T 2260 codes
            rows.append(
                {
                    "scope": scope,
                    "region_code": code,
                    "region_name": row["region_zh"],
                    "year": int(row["year"]),
                    "kgco2_per_kwh": Decimal(row["kgco2_per_kwh"]),
                    "kind": row["kind"],
                    "source": row["source"],
                }
            )
    return rows


def load(emission_factor_model: Any) -> int:
    """Insert the rows that are missing (by scope, region, kind, year); returns how many were added."""
    added = 0
    for row in factor_rows():
        key = {k: row[k] for k in ("scope", "region_code", "kind", "year")}
        _obj, created = emission_factor_model.objects.get_or_create(**key, defaults=row)
        added += int(created)
    return added
