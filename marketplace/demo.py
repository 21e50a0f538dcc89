"""The demo world, supply part: a site in every 东数西算 hub, pools of NVIDIA, AMD and domestic accelerators,
some attested and some not. Idempotent: running it again changes nothing. Runs after ``accounts.demo``."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from accounts.demo import DEMO_PASSWORD
from accounts.models import Membership, Organization, OrganizationKind, OrganizationStatus, Role, User
from marketplace import services
from marketplace.models import AcceleratorModel, Cluster, Pool, PoolStatus, Site


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
