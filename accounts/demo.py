"""The demo world for `make run` (accounts part). Idempotent: running it again changes nothing.

Later features extend the demo through their own ``demo.py`` modules, called by ``manage.py seed_demo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from stdnum.cn import uscc as uscc_number

from accounts.models import Membership, Organization, OrganizationKind, OrganizationStatus, Role, User
from accounts.services import ShareholderInput, company_profile_save

DEMO_PASSWORD = "suanli-demo-2026"  # noqa: S105 - documented demo login, never used in production  # nosec B105


def demo_uscc(body17: str) -> str:
    """A 统一社会信用代码 with a correct check digit, for demo firms (the body is made up)."""
    return body17 + uscc_number.calc_check_digit(body17)


@dataclass(frozen=True)
class DemoOrg:
    email: str
    full_name: str
    name: str
    kind: str
    province: str
    city: str
    industry: str
    employees: int | None
    revenue_wan: int | None
    uscc_body: str
    legal_rep: str
    founded: str | None = None


DEMO_ORGS: list[DemoOrg] = [
    DemoOrg(
        "admin@suanli.demo",
        "平台管理员",
        "算力交易平台运营中心",
        OrganizationKind.PLATFORM,
        "11",
        "北京市",
        "software",
        80,
        9000,
        "91110108MA015UANL",
        "周平",
    ),
    DemoOrg(
        "ops@ningxia-idc.demo",
        "马云峰",
        "宁夏中卫云谷智算中心",
        OrganizationKind.PROVIDER,
        "64",
        "中卫市",
        "software",
        260,
        38000,
        "91640500MA762WYG0",
        "马云峰",
    ),
    DemoOrg(
        "ops@guian-compute.demo",
        "杨黔",
        "贵州贵安算力科技有限公司",
        OrganizationKind.PROVIDER,
        "52",
        "贵安新区",
        "software",
        180,
        21000,
        "91520900MAAJGA501",
        "杨黔",
    ),
    DemoOrg(
        "ops@lingang-aidc.demo",
        "陈沪生",
        "上海临港智算运营有限公司",
        OrganizationKind.PROVIDER,
        "31",
        "上海市",
        "software",
        120,
        15000,
        "91310115MA1LG2502",
        "陈沪生",
    ),
    DemoOrg(
        "ops@helinger-dc.demo",
        "乌兰",
        "内蒙古和林格尔云数据有限公司",
        OrganizationKind.PROVIDER,
        "15",
        "呼和浩特市",
        "software",
        90,
        8000,
        "91150123MA0HLGE03",
        "乌兰",
    ),
    DemoOrg(
        "buyer@hz-precision.demo",
        "王建国",
        "杭州智造精密机械有限公司",
        OrganizationKind.BUYER,
        "33",
        "杭州市",
        "industry",
        160,
        12000,
        "91330110MA2H2JM04",
        "王建国",
        "2015-04-20",
    ),
    DemoOrg(
        "buyer@sz-vision.demo",
        "李晓雯",
        "深圳微视智能科技有限公司",
        OrganizationKind.BUYER,
        "44",
        "深圳市",
        "software",
        35,
        1800,
        "91440300MA552W505",
        "李晓雯",
        "2023-03-01",
    ),
    DemoOrg(
        "buyer@cd-ailab.demo",
        "张蜀",
        "成都天府人工智能研究院有限公司",
        OrganizationKind.BUYER,
        "51",
        "成都市",
        "software",
        60,
        900,
        "91510100MA6CDTF06",
        "张蜀",
        "2022-09-15",
    ),
    DemoOrg(
        "buyer@bj-robotics.demo",
        "赵北",
        "北京灵巧机器人科技有限公司",
        OrganizationKind.BUYER,
        "11",
        "北京市",
        "industry",
        75,
        4200,
        "91110108MA01BJLQ7",
        "赵北",
        "2021-06-08",
    ),
    DemoOrg(
        "voucher@shanghai-eitc.demo",
        "孙审核",
        "上海市经济和信息化委员会",
        OrganizationKind.ISSUER,
        "31",
        "上海市",
        "other",
        300,
        None,
        "11310000002419308",
        "上海市经济和信息化委员会",
    ),
    DemoOrg(
        "voucher@beijing-eitb.demo",
        "钱审核",
        "北京市经济和信息化局",
        OrganizationKind.ISSUER,
        "11",
        "北京市",
        "other",
        300,
        None,
        "11110000000021135",
        "北京市经济和信息化局",
    ),
]


def seed() -> list[DemoOrg]:
    with transaction.atomic():
        for spec in DEMO_ORGS:
            user = User.objects.filter(email=spec.email).first()
            if user is None:
                user = User.objects.create_user(
                    email=spec.email,
                    password=DEMO_PASSWORD,
                    full_name=spec.full_name,
                    is_staff=spec.kind == OrganizationKind.PLATFORM,
                    is_superuser=spec.kind == OrganizationKind.PLATFORM,
                )
            organization, _created = Organization.objects.get_or_create(
                name=spec.name, defaults={"kind": spec.kind, "status": OrganizationStatus.ACTIVE}
            )
            membership, _created = Membership.objects.get_or_create(
                user=user, organization=organization, defaults={"role": Role.OWNER}
            )
            if not hasattr(organization, "company_profile"):
                company_profile_save(
                    acting=membership,
                    legal_name=spec.name,
                    uscc=demo_uscc(spec.uscc_body),
                    registered_province=spec.province,
                    registered_city=spec.city,
                    industry=spec.industry,
                    employees=spec.employees,
                    annual_revenue_wan=Decimal(spec.revenue_wan) if spec.revenue_wan is not None else None,
                    total_assets_wan=None,
                    legal_representative=spec.legal_rep,
                    founded_on=spec.founded,
                    shareholders=[ShareholderInput(name=spec.legal_rep, uscc="", share_pct=Decimal(60))]
                    if spec.kind in (OrganizationKind.BUYER, OrganizationKind.PROVIDER)
                    else [],
                )
    return DEMO_ORGS
