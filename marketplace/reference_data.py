"""Reference data shipped with the project: marketplace/data/accelerators.csv and hubs.csv (with their sources).

Parsing only (no ORM): the data migration and the tests read the rows from here. An empty cell is ``None``
(unknown), never a guess.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"

# Vendor -> (domestic 国产, software stack). Vendors not listed are treated as foreign with "other".
VENDORS: dict[str, tuple[bool, str]] = {
    "NVIDIA": (False, "cuda"),
    "AMD": (False, "rocm"),
    "Huawei": (True, "cann"),
    "Hygon": (True, "dtk"),
    "Cambricon": (True, "neuware"),
    "Moore Threads": (True, "musa"),
    "MetaX": (True, "mxmaca"),
    "Biren": (True, "birensupa"),
    "Iluvatar CoreX": (True, "corex"),
    "Enflame": (True, "topsrider"),
    "Kunlunxin": (True, "xpu"),
}

DECIMAL_COLUMNS = {
    "fp64_tflops": "fp64_tflops",
    "fp32_tflops": "fp32_tflops",
    "tf32_tflops": "tf32_tflops",
    "bf16_tflops": "bf16_tflops",
    "fp16_tflops": "fp16_tflops",
    "fp8_tflops": "fp8_tflops",
    "int8_tops": "int8_tops",
    "memory_gb": "memory_gb",
    "memory_bw_tbps": "memory_bw_tbps",
}


def _decimal(cell: str) -> Decimal | None:
    cell = cell.strip()
    return Decimal(cell) if cell else None


def accelerator_rows() -> Iterator[dict[str, Any]]:
    with (DATA_DIR / "accelerators.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            vendor = row["vendor"].strip()
            domestic, stack = VENDORS.get(vendor, (False, "other"))
            item: dict[str, Any] = {
                "vendor": vendor,
                "name": row["model"].strip(),
                "form_factor": row["form_factor"].strip(),
                "interconnect": row["interconnect"].strip(),
                "source_url": row["source_url"].strip(),
                "tdp_w": int(row["tdp_w"]) if row["tdp_w"].strip() else None,
                "domestic": domestic,
                "software_stack": stack,
            }
            for column, field in DECIMAL_COLUMNS.items():
                item[field] = _decimal(row[column])
            yield item


def hub_rows() -> Iterator[dict[str, str]]:
    with (DATA_DIR / "hubs.csv").open(encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def load(accelerator_model: Any, hub: Any, cluster: Any) -> None:
    """Upsert the catalog and the hubs; the model classes are passed in (historical ones in the migration)."""
    for row in accelerator_rows():
        vendor, name = row.pop("vendor"), row.pop("name")
        accelerator_model.objects.update_or_create(vendor=vendor, name=name, defaults=row)
    for row in hub_rows():
        hub_row, _created = hub.objects.update_or_create(
            code=row["hub_code"],
            defaults={
                "name_zh": row["hub_zh"],
                "name_en": row["hub_en"],
                "side": row["side"],
                "grid_region": row["grid_region"],
            },
        )
        cluster.objects.update_or_create(
            name_zh=row["cluster_zh"],
            defaults={
                "hub": hub_row,
                "start_zone_zh": row["start_zone_zh"],
                "provinces": row["provinces"],
                "grid_region": row["grid_region"],
                "role": row["role"],
            },
        )
