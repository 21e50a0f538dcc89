"""The catalog and hubs loaded by the data migration, faithful to marketplace/data/*.csv."""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest

from marketplace.models import AcceleratorModel, Cluster, Hub
from marketplace.reference_data import DATA_DIR, VENDORS

pytestmark = pytest.mark.django_db


def test_every_csv_row_is_in_the_catalog_with_its_source():
    with (DATA_DIR / "accelerators.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert AcceleratorModel.objects.count() >= len(rows)
    for row in rows:
        model = AcceleratorModel.objects.get(vendor=row["vendor"], name=row["model"])
        assert model.source_url == row["source_url"]
        for column in ("bf16_tflops", "fp16_tflops", "memory_bw_tbps", "memory_gb"):
            expected = Decimal(row[column]) if row[column] else None
            assert getattr(model, column) == expected, (row["model"], column)


def test_empty_cells_stay_unknown():
    mlu590 = AcceleratorModel.objects.get(vendor="Cambricon", name="MLU590")
    assert mlu590.bf16_tflops is None
    assert mlu590.memory_bw_tbps is None
    assert mlu590.tdp_w is None
    assert mlu590.normalised().scu is None
    ascend = AcceleratorModel.objects.get(vendor="Huawei", name__startswith="Ascend 910B")
    assert ascend.dense_tflops == Decimal(280)
    assert ascend.memory_bw_tbps is None


def test_domestic_flags_and_stacks():
    assert not AcceleratorModel.objects.filter(vendor__in=["NVIDIA", "AMD"], domestic=True).exists()
    domestic_vendors = set(AcceleratorModel.objects.filter(domestic=True).values_list("vendor", flat=True))
    assert {"Huawei", "Hygon", "Cambricon", "Moore Threads", "MetaX", "Biren", "Kunlunxin"} <= domestic_vendors
    for vendor, (domestic, stack) in VENDORS.items():
        for model in AcceleratorModel.objects.filter(vendor=vendor):
            assert (model.domestic, model.software_stack) == (domestic, stack)


def test_hubs_and_clusters():
    assert Hub.objects.count() == 8
    assert Cluster.objects.count() == 10
    assert set(Hub.objects.filter(side="west").values_list("code", flat=True)) == {"nx", "nmg", "gs", "gz"}
    assert Cluster.objects.get(name_zh="芜湖数据中心集群").hub.code == "csj"
