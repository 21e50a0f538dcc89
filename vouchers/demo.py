"""Demo vouchers: a Beijing-style and a Shanghai-style programme, applications in every state, redeemed
invoices with metered evidence, one reimbursement paid. Idempotent: running it again changes nothing."""

from __future__ import annotations

from datetime import date

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from accounts.models import Organization
from core.timeutils import utcnow
from vouchers import services
from vouchers.forms import day_end_exclusive, day_start
from vouchers.models import Application, ApplicationStatus, Program, Redemption, SettlementStatus
from vouchers.program_templates import WAN
from vouchers.rules import EligibleLine

BEIJING_ISSUER = "北京市经济和信息化局"
SHANGHAI_ISSUER = "上海市经济和信息化委员会"
BEIJING_PROGRAM = "北京市人工智能算力券（2026年度）"
SHANGHAI_PROGRAM = "上海市算力券（2026年度，演示：面向全国用户）"


def _org(name: str) -> Organization:
    return Organization.objects.get(name=name)


def _pdf(name: str) -> SimpleUploadedFile:
    body = b"%PDF-1.4\n% demo contract\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    return SimpleUploadedFile(name, body, content_type="application/pdf")


def _program(issuer: Organization, name: str, template: str, **kwargs: object) -> Program:
    existing = Program.objects.filter(issuer=issuer, name=name).first()
    if existing:
        return existing
    return services.program_create_from_template(
        issuer=issuer,
        template_key=template,
        name=name,
        fiscal_year=2026,
        valid_from=day_start(date(2026, 1, 1)),
        valid_until=day_end_exclusive(date(2027, 12, 31)),
        actor=None,
        **kwargs,  # type: ignore[arg-type]
    )


def _apply(program: Program, buyer: Organization, amount_yuan: int, purpose: str, **kwargs: object) -> Application:
    return services.application_submit(
        buyer=buyer,
        program=program,
        requested_minor=amount_yuan * 100,
        purpose=purpose,
        **kwargs,  # type: ignore[arg-type]
    )


def _has(program: Program, buyer: Organization, status: str) -> bool:
    return Application.objects.filter(program=program, buyer=buyer, status=status).exists()


def _line(provider: Organization, amount_yuan: int, *, domestic: bool, lease: str, hours: int) -> EligibleLine:
    return EligibleLine(
        amount_minor=amount_yuan * 100,
        currency="CNY",
        provider_id=provider.pk,
        chip_domestic=domestic,
        compute_only=True,
        evidence={"lease": lease, "accelerator_seconds": hours * 3600, "usage_records": hours, "period": "2026-10"},
    )


def seed() -> None:
    beijing, shanghai = _org(BEIJING_ISSUER), _org(SHANGHAI_ISSUER)
    ningxia, guian = _org("宁夏中卫云谷智算中心"), _org("贵州贵安算力科技有限公司")
    lingang, helinger = _org("上海临港智算运营有限公司"), _org("内蒙古和林格尔云数据有限公司")
    bj_robotics, hz_precision = _org("北京灵巧机器人科技有限公司"), _org("杭州智造精密机械有限公司")
    sz_vision, cd_ailab = _org("深圳微视智能科技有限公司"), _org("成都天府人工智能研究院有限公司")
    now = utcnow()
    expiry = day_end_exclusive(date(2027, 6, 30))

    with transaction.atomic():
        bj_program = _program(
            beijing,
            BEIJING_PROGRAM,
            "beijing-compute",
            budget_minor=5000 * WAN,  # the policy text publishes no budget: a demo figure
            document_number="京经信发〔2023〕示例号",
            allowed_providers=[ningxia, guian, helinger],
            contact_name="钱审核",
            contact_phone="010-5555 0101",
            contact_email="voucher@beijing-eitb.demo",
        )
        sh_program = _program(
            shanghai,
            SHANGHAI_PROGRAM,
            "shanghai-compute",
            budget_minor=2000 * WAN,
            document_number="沪经信规〔2025〕示例号",
            eligible_provinces=[],  # demo: every demo buyer may apply
            contact_name="孙审核",
            contact_phone="021-5555 0202",
            contact_email="voucher@shanghai-eitc.demo",
        )

        # Beijing: approved, with redeemed invoices (one reimbursement paid, one pending).
        if not _has(bj_program, bj_robotics, ApplicationStatus.APPROVED):
            application = _apply(
                bj_program,
                bj_robotics,
                1_000_000,
                "灵巧手视觉-触觉多模态大模型训练（国产算力 + 通用算力）",
                contract_reference="BJLQ-2026-017",
                planned_usage="宁夏中卫云谷 昇腾910B 64卡 × 3个月；贵安 H20 32卡",
                providers=[ningxia, guian],
                files=[_pdf("算力服务合同-BJLQ-2026-017.pdf")],
            )
            services.application_approve(
                issuer=beijing, application=application, amount_minor=1_000_000 * 100, expires_at=expiry
            )
        invoices = [
            ("INV-2026-10-BJLQ-001", [_line(ningxia, 180_000, domestic=True, lease="L-NX-0412", hours=12_000)]),
            (
                "INV-2026-11-BJLQ-002",
                [
                    _line(ningxia, 95_000, domestic=True, lease="L-NX-0412", hours=6_300),
                    _line(guian, 120_000, domestic=False, lease="L-GA-0077", hours=4_000),
                ],
            ),
        ]
        for reference, lines in invoices:
            services.voucher_subsidy_reserve(buyer=bj_robotics, invoice_reference=reference, lines=lines, at=now)
        first = Redemption.objects.filter(invoice_reference="INV-2026-10-BJLQ-001").first()
        if first and first.settlement_status == SettlementStatus.PENDING:
            services.redemption_mark_paid(issuer=beijing, redemption=first, fiscal_reference="京财库〔2026〕11-0087")

        # Shanghai: one of each state.
        if not _has(sh_program, hz_precision, ApplicationStatus.APPROVED):
            application = _apply(
                sh_program,
                hz_precision,
                300_000,
                "精密零件缺陷检测模型训练与推理",
                contract_reference="HZZZ-LG-2026-03",
                providers=[lingang],
            )
            services.application_approve(
                issuer=shanghai, application=application, amount_minor=300_000 * 100, expires_at=expiry
            )
            services.voucher_subsidy_reserve(
                buyer=hz_precision,
                invoice_reference="INV-2026-11-HZZZ-001",
                lines=[_line(lingang, 260_000, domestic=False, lease="L-LG-0031", hours=9_500)],
                at=now,
            )
        if not Application.objects.filter(program=sh_program, buyer=sz_vision).exists():
            application = _apply(
                sh_program,
                sz_vision,
                200_000,
                "端侧视觉大模型蒸馏",
                contract_reference="SZWS-2026-09",
                providers=[lingang],
                files=[_pdf("报价单.pdf")],
            )
            services.application_request_info(
                issuer=shanghai,
                application=application,
                message="请补充与临港智算签订的算力服务合同及近三个月纳税证明。",
            )
        if not Application.objects.filter(program=sh_program, buyer=cd_ailab).exists():
            withdrawn = _apply(sh_program, cd_ailab, 80_000, "川菜知识图谱问答模型（草稿，已撤回）")
            services.application_withdraw(buyer=cd_ailab, application=withdrawn)
            _apply(
                sh_program,
                cd_ailab,
                150_000,
                "天府文旅多模态大模型微调",
                contract_reference="CDTF-2026-21",
                planned_usage="和林格尔 A800 16卡 × 2个月",
                providers=[helinger],
            )
        if not Application.objects.filter(program=sh_program, buyer=bj_robotics).exists():
            rejected = _apply(
                sh_program,
                bj_robotics,
                400_000,
                "灵巧手大模型训练（同一事项）",
                contract_reference="BJLQ-2026-017",
                providers=[ningxia],
            )
            services.application_reject(
                issuer=shanghai,
                application=rejected,
                reason="同一合同已获北京市算力券支持，按规定不重复支持。",
            )
