"""Supply-side objects for tests (direct model writes: fast, no audit rows)."""

from __future__ import annotations

from decimal import Decimal

from accounts.models import Organization
from marketplace.models import AcceleratorModel, Attestation, Pool, PoolShare, Site

H100 = ("NVIDIA", "H100 SXM5")


def ensure_reference_data() -> None:
    """Transactional tests flush the rows of the data migration: put them back when they are missing."""
    from marketplace.models import Cluster, Hub
    from marketplace.reference_data import load

    if not AcceleratorModel.objects.exists() or not Hub.objects.exists():
        load(AcceleratorModel, Hub, Cluster)


def accelerator(vendor: str = H100[0], name: str = H100[1]) -> AcceleratorModel:
    ensure_reference_data()
    return AcceleratorModel.objects.get(vendor=vendor, name=name)


def make_site(organization: Organization, name: str = "中卫一号", **fields: object) -> Site:
    ensure_reference_data()
    values: dict[str, object] = {
        "province": "64",
        "city": "中卫市",
        "grid_region": "northwest",
        "pue": Decimal("1.20"),
        "latency_tier": "cross_hub",
    }
    values.update(fields)
    return Site.objects.create(organization=organization, name=name, **values)


def make_pool(site: Site, name: str = "H100 池", model: AcceleratorModel | None = None, **fields: object) -> Pool:
    model = model or accelerator()
    values: dict[str, object] = {"accelerator_count": 8, "software_stack": model.software_stack}
    values.update(fields)
    pool = Pool.objects.create(organization=site.organization, site=site, accelerator_model=model, name=name, **values)
    PoolShare.objects.create(pool=pool, organization=site.organization, share_pct=Decimal(100))
    return pool


def make_attestation(pool: Pool, tflops: str = "900", tbps: str = "3.1") -> Attestation:
    return Attestation.objects.create(
        pool=pool,
        organization=pool.organization,
        measured_tflops=Decimal(tflops),
        measured_bw_tbps=Decimal(tbps),
        raw_output="test",
        source="portal",
        submitted_by_label="test",
    )
