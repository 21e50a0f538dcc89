from __future__ import annotations

from decimal import Decimal

import pytest

from marketplace import services
from marketplace.models import Cluster


@pytest.fixture
def provider(make_org):
    return make_org("provider", name="宁夏中卫云谷智算中心")


@pytest.fixture
def site_input():
    def build(**overrides):
        values = {
            "name": "中卫云谷一号",
            "province": "64",
            "city": "中卫市",
            "cluster_id": Cluster.objects.get(name_zh="中卫数据中心集群").public_id,
            "grid_region": "northwest",
            "pue": Decimal("1.15"),
            "pue_period_start": None,
            "pue_period_end": None,
            "green_share_pct": Decimal(65),
            "latency_tier": "cross_hub",
            "dengbao_level": 3,
        }
        values.update(overrides)
        return services.SiteInput(**values)

    return build


@pytest.fixture
def pool_input():
    def build(site, model, owner, **overrides):
        values = {
            "site_id": site.public_id,
            "accelerator_model_id": model.public_id,
            "name": "A栋 H100",
            "accelerator_count": 64,
            "interconnect": "NVLink 4",
            "software_stack": "",
            "shares": [services.ShareInput(owner=str(owner.public_id), share_pct=Decimal(100))],
        }
        values.update(overrides)
        return services.PoolInput(**values)

    return build


@pytest.fixture
def reference_data(transactional_db):
    """The catalog and hubs for tests on a live server: a transactional test's flush empties the tables that
    the data migration filled, so load them again (idempotent)."""
    from marketplace.models import AcceleratorModel, Hub
    from marketplace.reference_data import load

    load(AcceleratorModel, Hub, Cluster)


@pytest.fixture(scope="session", autouse=True)
def _reference_data_committed(django_db_setup, django_db_blocker):
    """The data migration fills the catalog and hubs, but a transactional test's flush (any app's, in an earlier
    run of a reused database) empties them: load them once per session, committed (idempotent)."""
    from marketplace.models import AcceleratorModel, Hub
    from marketplace.reference_data import load

    with django_db_blocker.unblock():
        load(AcceleratorModel, Hub, Cluster)
