"""The demo world: a site in every 东数西算 hub, pools of NVIDIA, AMD and domestic accelerators, some attested and
some not; then a live-looking market (``seed_market``): a few hundred offers over the next weeks across every listed
pool, bids of the demo buyers (some matched into leases, some confirmed by the provider, others resting below the
asks for the order book). Everything goes through the services, so the market's invariants hold. Idempotent: running
it again changes nothing while the market still has offers ahead; once they have run out, a fresh batch is posted.
Runs after ``accounts.demo``."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction

from accounts.demo import DEMO_PASSWORD
from accounts.models import Membership, Organization, OrganizationKind, OrganizationStatus, Role, User
from core.errors import ApplicationError
from core.timeutils import floor_hour, utcnow
from marketplace import services
from marketplace.models import AcceleratorModel, Cluster, Lease, LeaseStatus, Offer, OrderStatus, Pool, PoolStatus, Site


@dataclass(frozen=True)
class ExtraProvider:
    email: str
    full_name: str
    name: str


# Providers for the hubs that accounts.demo's four providers do not cover.
EXTRA_PROVIDERS = [
    ExtraProvider("ops@huailai-cloud.demo", "冀云", "张家口怀来云计算有限公司"),
    ExtraProvider("ops@tianfu-aidc.demo", "蜀算", "成都天府智算科技有限公司"),
    ExtraProvider("ops@shaoguan-dc.demo", "粤韶", "韶关数据港科技有限公司"),
    ExtraProvider("ops@qingyang-compute.demo", "陇东", "庆阳东数西算算力有限公司"),
]


@dataclass(frozen=True)
class DemoSite:
    organization: str
    name: str
    province: str
    city: str
    cluster: str | None
    grid_region: str
    pue: str
    green: str
    latency: str
    dengbao: int | None


SITES = [
    DemoSite(
        "宁夏中卫云谷智算中心",
        "中卫云谷一号数据中心",
        "64",
        "中卫市",
        "中卫数据中心集群",
        "northwest",
        "1.15",
        "65",
        "cross_hub",
        3,
    ),
    DemoSite(
        "贵州贵安算力科技有限公司",
        "贵安七星湖数据中心",
        "52",
        "贵安新区",
        "贵安数据中心集群",
        "south",
        "1.20",
        "45",
        "cross_hub",
        3,
    ),
    DemoSite("上海临港智算运营有限公司", "临港新片区智算中心", "31", "上海市", None, "east", "1.28", "20", "city", 3),
    DemoSite(
        "上海临港智算运营有限公司",
        "芜湖鸠江数据中心",
        "34",
        "芜湖市",
        "芜湖数据中心集群",
        "east",
        "1.24",
        "25",
        "regional",
        3,
    ),
    DemoSite(
        "内蒙古和林格尔云数据有限公司",
        "和林格尔新区云数据中心",
        "15",
        "呼和浩特市",
        "和林格尔数据中心集群",
        "north",
        "1.18",
        "55",
        "cross_hub",
        3,
    ),
    DemoSite(
        "张家口怀来云计算有限公司",
        "怀来东园数据中心",
        "13",
        "张家口市",
        "张家口数据中心集群",
        "north",
        "1.22",
        "40",
        "regional",
        3,
    ),
    DemoSite(
        "成都天府智算科技有限公司",
        "天府智算中心",
        "51",
        "成都市",
        "天府数据中心集群",
        "southwest",
        "1.25",
        "50",
        "regional",
        3,
    ),
    DemoSite(
        "韶关数据港科技有限公司",
        "韶关高新区数据中心",
        "44",
        "韶关市",
        "韶关数据中心集群",
        "south",
        "1.25",
        "30",
        "regional",
        3,
    ),
    DemoSite(
        "庆阳东数西算算力有限公司",
        "庆阳西峰数据中心",
        "62",
        "庆阳市",
        "庆阳数据中心集群",
        "northwest",
        "1.17",
        "60",
        "cross_hub",
        2,
    ),
]


@dataclass(frozen=True)
class DemoPool:
    site: str
    vendor: str
    model_prefix: str
    name: str
    count: int
    status: str
    attested: tuple[str, str] | None  # (TFLOPS, TB/s) measured per accelerator
    partner: tuple[str, str] | None = None  # (organisation name, share %) next to the operator


POOLS = [
    DemoPool(
        "中卫云谷一号数据中心",
        "NVIDIA",
        "H100 SXM5",
        "A栋 H100 集群",
        512,
        "listed",
        ("871.5", "3.02"),
        ("内蒙古和林格尔云数据有限公司", "30"),
    ),
    DemoPool("中卫云谷一号数据中心", "Huawei", "Ascend 910B", "B栋 昇腾 910B", 256, "listed", ("262.0", "1.52")),
    DemoPool("贵安七星湖数据中心", "NVIDIA", "H20", "H20 推理池", 384, "listed", ("141.2", "3.71")),
    DemoPool("贵安七星湖数据中心", "Hygon", "DCU K100", "海光 DCU 池", 128, "listed", None),
    DemoPool("临港新片区智算中心", "NVIDIA", "H800", "H800 训练池", 128, "listed", ("905.0", "3.10")),
    DemoPool("临港新片区智算中心", "AMD", "Instinct MI300X", "MI300X 大显存池", 64, "listed", ("1102.4", "4.62")),
    DemoPool("芜湖鸠江数据中心", "NVIDIA", "L40S", "L40S 推理池", 200, "listed", None),
    DemoPool("和林格尔新区云数据中心", "NVIDIA", "A800", "A800 集群", 256, "listed", ("281.0", "1.86")),
    DemoPool("和林格尔新区云数据中心", "Huawei", "Ascend 910C", "昇腾 910C 超节点", 128, "listed", None),
    DemoPool("怀来东园数据中心", "Moore Threads", "MTT S4000", "摩尔线程 S4000 池", 96, "listed", ("86.3", "0.71")),
    DemoPool("天府智算中心", "Cambricon", "MLU370-X8", "寒武纪 MLU370 池", 80, "listed", ("82.7", "0.56")),
    DemoPool("天府智算中心", "MetaX", "Xiyun C550", "沐曦 C550 池", 64, "listed", None),
    DemoPool("韶关高新区数据中心", "NVIDIA", "GeForce RTX 4090", "4090 渲染与推理池", 320, "listed", None),
    DemoPool("庆阳西峰数据中心", "Kunlunxin", "R300", "昆仑芯 R300 池", 64, "listed", ("118.0", "0.98")),
    DemoPool("庆阳西峰数据中心", "Biren", "BR104", "壁仞 BR104 试验池", 32, "draft", None),
]


def _owner(organization: Organization) -> User:
    membership = organization.memberships.filter(role=Role.OWNER).select_related("user").first()
    assert membership is not None, f"{organization} has no owner"
    return membership.user


def _ensure_extra_providers() -> None:
    for spec in EXTRA_PROVIDERS:
        user = User.objects.filter(email=spec.email).first()
        if user is None:
            user = User.objects.create_user(email=spec.email, password=DEMO_PASSWORD, full_name=spec.full_name)
        organization, _created = Organization.objects.get_or_create(
            name=spec.name, defaults={"kind": OrganizationKind.PROVIDER, "status": OrganizationStatus.ACTIVE}
        )
        Membership.objects.get_or_create(user=user, organization=organization, defaults={"role": Role.OWNER})


def _raw_output(pool: DemoPool, model: AcceleratorModel) -> str:
    tflops, tbps = pool.attested or ("", "")
    return "\n".join(
        [
            "suanli-probe 1.0",
            f"backend=torch 2.5.1 device=accelerator ({model.vendor} {model.name})",
            f"gemm dtype=float16 n=8192 -> {tflops} TFLOPS",
            f"copy -> {tbps} TB/s",
            "(demo data)",
        ]
    )


def seed() -> None:
    with transaction.atomic():
        _ensure_extra_providers()
        for spec in SITES:
            organization = Organization.objects.get(name=spec.organization)
            if Site.objects.filter(organization=organization, name=spec.name).exists():
                continue
            cluster = Cluster.objects.get(name_zh=spec.cluster) if spec.cluster else None
            services.site_create(
                organization=organization,
                actor=_owner(organization),
                data=services.SiteInput(
                    name=spec.name,
                    province=spec.province,
                    city=spec.city,
                    cluster_id=cluster.public_id if cluster else None,
                    grid_region=spec.grid_region,
                    pue=Decimal(spec.pue),
                    pue_period_start=None,
                    pue_period_end=None,
                    green_share_pct=Decimal(spec.green),
                    latency_tier=spec.latency,
                    dengbao_level=spec.dengbao,
                ),
            )
        for pool_spec in POOLS:
            site = Site.objects.select_related("organization").get(name=pool_spec.site)
            organization = site.organization
            if Pool.objects.filter(site=site, name=pool_spec.name).exists():
                continue
            model = AcceleratorModel.objects.filter(
                vendor=pool_spec.vendor, name__startswith=pool_spec.model_prefix
            ).first()
            if model is None:
                continue  # the catalog no longer has the model: nothing to demo
            actor = _owner(organization)
            shares = [services.ShareInput(owner=str(organization.public_id), share_pct=Decimal(100))]
            if pool_spec.partner:
                partner = Organization.objects.get(name=pool_spec.partner[0])
                percent = Decimal(pool_spec.partner[1])
                shares = [
                    services.ShareInput(owner=str(organization.public_id), share_pct=Decimal(100) - percent),
                    services.ShareInput(owner=str(partner.public_id), share_pct=percent),
                ]
            pool = services.pool_create(
                organization=organization,
                actor=actor,
                data=services.PoolInput(
                    site_id=site.public_id,
                    accelerator_model_id=model.public_id,
                    name=pool_spec.name,
                    accelerator_count=pool_spec.count,
                    interconnect=model.interconnect[:200],
                    software_stack="",
                    shares=shares,
                ),
            )
            if pool_spec.attested:
                services.attestation_submit(
                    organization=organization,
                    pool=pool,
                    user=actor,
                    data=services.AttestationInput(
                        measured_tflops=Decimal(pool_spec.attested[0]),
                        measured_bw_tbps=Decimal(pool_spec.attested[1]),
                        raw_output=_raw_output(pool_spec, model),
                        tool="suanli-probe 1.0 (torch, float16, n=8192)",
                    ),
                )
            if pool_spec.status != PoolStatus.DRAFT:
                services.pool_set_status(organization=organization, actor=actor, pool=pool, status=pool_spec.status)

    seed_market()


# --- The market ----------------------------------------------------------------------------------------

# Typical asks in ¥ per accelerator-hour (2025 Chinese cloud and IDC list prices, rounded), by model name prefix.
TYPICAL_ASK = {
    "H100": "21",
    "H800": "18",
    "H20": "7.5",
    "A800": "10",
    "L40S": "5.5",
    "GeForce RTX 4090": "2.6",
    "Instinct MI300X": "19",
    "Ascend 910B": "8",
    "Ascend 910C": "13",
    "DCU K100": "5",
    "MTT S4000": "3.2",
    "MLU370": "3",
    "Xiyun C550": "6",
    "R300": "4",
}
WEST_DISCOUNT = Decimal("0.88")  # western hubs: cheaper power and land
OFFERS_PER_POOL = 16
MARKET_SEED = 20261123


@dataclass(frozen=True)
class DemoBid:
    buyer: str  # email of the buyer's owner
    accelerators: int
    hours: int
    limit: str
    unit: str
    workload: str = "training"
    models: tuple[str, ...] = ()  # model name prefixes
    tier: str = "any"
    min_green: int = 0
    domestic: bool = False
    verified: bool = False
    split: bool = False
    confirm: bool = False  # the provider confirms the lease it makes


# First the crossing bids (they match at once), then resting ones below the asks for the order book.
BIDS = [
    # A buyer in the east: 8 domestic accelerators for 24 h of training, >= 50 % green, a limit per SCU-hour.
    DemoBid("buyer@hz-precision.demo", 8, 24, "40", "scu_hour", min_green=50, domestic=True, confirm=True),
    DemoBid("buyer@sz-vision.demo", 4, 12, "9", "acc_hour", workload="inference", models=("H20",), tier="near"),
    DemoBid("buyer@cd-ailab.demo", 16, 48, "26", "scu_hour", models=("H100", "H800"), verified=True, confirm=True),
    DemoBid("buyer@bj-robotics.demo", 2, 8, "4", "bwu_hour", workload="inference", tier="near"),
    DemoBid("buyer@cd-ailab.demo", 32, 24, "12", "acc_hour", models=("A800", "Ascend 910B"), split=True),
    DemoBid("buyer@hz-precision.demo", 4, 72, "4", "acc_hour", models=("GeForce RTX 4090", "L40S"), confirm=True),
]
RESTING_FACTORS = ["0.65", "0.75", "0.85"]


def _typical_ask(model: AcceleratorModel) -> Decimal | None:
    for prefix, price in TYPICAL_ASK.items():
        if model.name.startswith(prefix):
            return Decimal(price)
    return None


def _window_start(now: datetime) -> datetime:
    return floor_hour(now) + timedelta(hours=1)


def _post_offers(pools: list[Pool], now: datetime, rng: random.Random) -> int:
    posted = 0
    for pool in pools:
        typical = _typical_ask(pool.accelerator_model)
        if typical is None:
            continue
        if pool.site.hub and pool.site.hub.side == "west":
            typical *= WEST_DISCOUNT
        actor = _owner(pool.organization)
        start = _window_start(now) + timedelta(hours=rng.randrange(0, 12))
        for _ in range(OFFERS_PER_POOL):
            hours = rng.choice([24, 36, 48, 72])
            share = rng.choice([Decimal("0.125"), Decimal("0.25"), Decimal("0.5"), Decimal("0.75")])
            ask = (typical * Decimal(rng.randint(88, 118)) / 100).quantize(Decimal("0.01"))
            data = services.OfferInput(
                pool_id=pool.public_id,
                accelerators=max(1, int(pool.accelerator_count * share)),
                start=start,
                end=start + timedelta(hours=hours),
                ask=ask,
                min_lease_hours=rng.choice([1, 4, 8, 24]),
            )
            try:
                services.offer_create(organization=pool.organization, actor=actor, data=data, now=now)
                posted += 1
            except ApplicationError:
                pass  # overlaps an earlier run's offers of this pool: leave those
            start += timedelta(hours=hours)
    return posted


def _place_bids(now: datetime, rng: random.Random) -> None:
    buyers = {
        m.user.email: m.organization
        for m in Membership.objects.filter(user__email__in={b.buyer for b in BIDS}).select_related(
            "user", "organization"
        )
    }
    start = _window_start(now)
    for spec in BIDS:
        organization = buyers.get(spec.buyer)
        if organization is None:
            continue
        models = [
            str(m.public_id)
            for prefix in spec.models
            for m in AcceleratorModel.objects.filter(name__startswith=prefix).order_by("name")[:1]
        ]
        data = services.BidInput(
            accelerators=spec.accelerators,
            hours=spec.hours,
            earliest_start=start,
            latest_end=start + timedelta(days=7),
            limit_price=Decimal(spec.limit),
            price_unit=spec.unit,
            workload=spec.workload,
            latency_tier=spec.tier,
            accelerator_models=tuple(models),
            min_green_share_pct=spec.min_green,
            domestic_only=spec.domestic,
            verified_only=spec.verified,
            split_allowed=spec.split,
        )
        try:
            bid = services.bid_create(organization=organization, actor=_owner(organization), data=data, now=now)
        except ApplicationError:
            continue  # the supply changed: this demo bid no longer fits
        if spec.confirm:
            for lease in Lease.objects.filter(bid=bid, status=LeaseStatus.PENDING).select_related("provider"):
                services.lease_respond(
                    organization=lease.provider, actor=_owner(lease.provider), lease=lease, confirm=True, now=now
                )
    # Resting bids below the asks, per model, for the order book.
    listed = (
        AcceleratorModel.objects.filter(pools__status=PoolStatus.LISTED, pools__offers__status=OrderStatus.OPEN)
        .distinct()
        .order_by("vendor", "name")
    )
    organizations = list(buyers.values())
    for index, model in enumerate(listed):
        typical = _typical_ask(model)
        if typical is None or not organizations:
            continue
        for step, factor in enumerate(RESTING_FACTORS):
            organization = organizations[(index + step) % len(organizations)]
            data = services.BidInput(
                accelerators=rng.choice([1, 2, 4, 8]),
                hours=rng.choice([4, 8, 24]),
                earliest_start=start,
                latest_end=start + timedelta(days=rng.choice([3, 7, 14])),
                limit_price=(typical * Decimal(factor)).quantize(Decimal("0.01")),
                accelerator_models=(str(model.public_id),),
            )
            try:
                services.bid_create(organization=organization, actor=_owner(organization), data=data, now=now)
            except ApplicationError:
                continue


def seed_market(*, now: datetime | None = None) -> None:
    """Offers, bids and leases of the demo market (see the module docstring)."""
    now = now or utcnow()
    pools = list(
        Pool.objects.filter(status=PoolStatus.LISTED, site__name__in=[s.name for s in SITES])
        .select_related("organization", "site__hub", "accelerator_model")
        .order_by("id")
    )
    if (
        not pools
        or Offer.objects.filter(pool__in=pools, status=OrderStatus.OPEN, end__gt=now + timedelta(days=7)).exists()
    ):
        return  # the market is still live from an earlier run
    rng = random.Random(MARKET_SEED)  # noqa: S311 (demo data, not security)  # nosec B311
    _post_offers(pools, now, rng)
    _place_bids(now, rng)


def backdated_lease(
    *, buyer: Organization, pool: Pool, accelerators: int, start: datetime, end: datetime, price: Decimal, now: datetime
) -> Lease:
    """A lease in the past (or begun in the past) for later apps' demos, written directly with its offer, bid,
    allocations and history: the market only sells current and future hours, and metering's and billing's demos
    need leases that already ran. Takes the pool's lowest accelerator indexes free over the period."""
    from marketplace.models import Bid, LeaseAllocation, LeaseEvent

    offer = Offer.objects.create(
        organization=pool.organization,
        pool=pool,
        accelerators=accelerators,
        start=start,
        end=end,
        ask=price,
        status=OrderStatus.FILLED,
    )
    bid = Bid.objects.create(
        organization=buyer,
        accelerators=accelerators,
        hours=int((end - start).total_seconds() // 3600),
        earliest_start=start,
        latest_end=end,
        limit_price=price,
        price_unit="acc_hour",
        status=OrderStatus.FILLED,
        filled_accelerators=accelerators,
        fixed_start=start,
    )
    status = LeaseStatus.ACTIVE if end > now else LeaseStatus.COMPLETED
    lease = Lease.objects.create(
        bid=bid,
        offer=offer,
        pool=pool,
        buyer=buyer,
        provider=pool.organization,
        accelerators=accelerators,
        start=start,
        end=end,
        price=price,
        status=status,
        confirm_by=start,
    )
    taken = set(
        LeaseAllocation.objects.filter(pool=pool, period__overlap=(start, end)).values_list(
            "accelerator_index", flat=True
        )
    )
    free = [i for i in range(pool.accelerator_count) if i not in taken][:accelerators]
    LeaseAllocation.objects.bulk_create(
        [LeaseAllocation(lease=lease, pool=pool, accelerator_index=i, period=(start, end)) for i in free]
    )
    events = [
        LeaseEvent(lease=lease, from_status=LeaseStatus.PENDING, to_status=LeaseStatus.ACTIVE, actor_label="demo")
    ]
    if status == LeaseStatus.COMPLETED:
        events.append(
            LeaseEvent(lease=lease, from_status=LeaseStatus.ACTIVE, to_status=LeaseStatus.COMPLETED, actor_label="demo")
        )
    LeaseEvent.objects.bulk_create(events)
    return lease
