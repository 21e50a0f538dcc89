from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.models import AbstractAPIKey

from accounts.regions import province_choices
from accounts.sme import SizeClass, industry_choices
from core.ids import PublicIdModel
from core.money import CURRENCY_CHOICES, DEFAULT_CURRENCY


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: object) -> User:
        if not email:
            raise ValueError("email is required")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: object) -> User:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **fields)


class User(PublicIdModel, AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with an e-mail address; belongs to organisations through memberships."""

    email = models.EmailField(_("email address"), max_length=254, unique=True)
    full_name = models.CharField(_("full name"), max_length=150, blank=True)
    is_staff = models.BooleanField(_("platform staff"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), auto_now_add=True)
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True, help_text=_("Empty: Asia/Shanghai"))

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_unique_ci")]
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name or self.email.split("@")[0]


class OrganizationKind(models.TextChoices):
    PROVIDER = "provider", _("Provider")
    BUYER = "buyer", _("Buyer")
    ISSUER = "issuer", _("Voucher issuer")
    PLATFORM = "platform", _("Platform operator")


class OrganizationStatus(models.TextChoices):
    PENDING = "pending", _("Pending verification")
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")


class Organization(PublicIdModel):
    """A tenant: a provider, a buyer, a voucher-issuing bureau or the platform itself."""

    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=20, choices=OrganizationKind.choices)
    status = models.CharField(
        _("status"), max_length=20, choices=OrganizationStatus.choices, default=OrganizationStatus.ACTIVE
    )
    billing_currency = models.CharField(
        _("billing currency"), max_length=3, choices=CURRENCY_CHOICES, default=DEFAULT_CURRENCY
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("organization")
        verbose_name_plural = _("organizations")

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Administrator")
    MEMBER = "member", _("Member")
    VIEWER = "viewer", _("Viewer")


# Higher rank = more rights. Owners manage everything; admins manage members and keys; members act;
# viewers read.
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(PublicIdModel):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")]
        ordering = ["organization__name", "user__email"]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(minimum)]


class Invitation(PublicIdModel):
    """An e-mailed invitation to join an organisation with a role. The token is stored only as a hash."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(_("email address"))
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                "organization",
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_open_per_email",
            ),
            models.CheckConstraint(
                condition=Q(accepted_at__isnull=True) | Q(revoked_at__isnull=True),
                name="invitation_not_both_closed",
            ),
        ]
        ordering = ["-created_at"]
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")

    def __str__(self) -> str:
        return f"{self.email} -> {self.organization}"


SIZE_CLASS_CHOICES = [
    (SizeClass.LARGE.value, _("Large")),
    (SizeClass.MEDIUM.value, _("Medium")),
    (SizeClass.SMALL.value, _("Small")),
    (SizeClass.MICRO.value, _("Micro")),
]


class CompanyProfile(models.Model):
    """The legal identity of an organisation's company (企业信息).

    Buyers need it for voucher eligibility (registration place, size class, industry); every kind needs it for
    related-party checks (shared 统一社会信用代码, legal representative or shareholder) and tax documents.
    """

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="company_profile")
    legal_name = models.CharField(_("registered company name"), max_length=200)
    uscc = models.CharField(_("unified social credit code (统一社会信用代码)"), max_length=18, db_index=True)
    registered_province = models.CharField(_("province of registration"), max_length=2, choices=province_choices())
    registered_city = models.CharField(_("city of registration"), max_length=100)
    industry = models.CharField(_("industry"), max_length=40, choices=industry_choices())
    employees = models.PositiveIntegerField(_("employees"), null=True, blank=True)
    annual_revenue_wan = models.DecimalField(
        _("operating revenue last year (10,000 CNY)"),
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
    )
    total_assets_wan = models.DecimalField(
        _("total assets (10,000 CNY)"),
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
    )
    size_class = models.CharField(_("size class"), max_length=10, choices=SIZE_CLASS_CHOICES)
    founded_on = models.DateField(_("date of establishment"), null=True, blank=True)
    legal_representative = models.CharField(_("legal representative"), max_length=100)
    address = models.CharField(_("registered address"), max_length=300, blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    bank_name = models.CharField(_("bank"), max_length=200, blank=True)
    bank_account = models.CharField(_("bank account"), max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("company profile")
        verbose_name_plural = _("company profiles")

    def __str__(self) -> str:
        return f"{self.legal_name} ({self.uscc})"


class Shareholder(models.Model):
    profile = models.ForeignKey(CompanyProfile, on_delete=models.CASCADE, related_name="shareholders")
    name = models.CharField(_("name"), max_length=200)
    # A company shareholder's 统一社会信用代码, or empty for a natural person.
    uscc = models.CharField(_("unified social credit code"), max_length=18, blank=True, db_index=True)
    share_pct = models.DecimalField(
        _("share (%)"),
        max_digits=6,
        decimal_places=3,
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal(100))],
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(share_pct__gt=0, share_pct__lte=100), name="shareholder_pct_range"),
        ]
        verbose_name = _("shareholder")
        verbose_name_plural = _("shareholders")

    def __str__(self) -> str:
        return f"{self.name} {self.share_pct}%"


class ApiScope(models.TextChoices):
    METERING_WRITE = "metering:write", _("Report usage (metering)")
    MARKET_READ = "market:read", _("Read market data")
    MARKET_WRITE = "market:write", _("Place and cancel orders")
    SUPPLY_WRITE = "supply:write", _("Manage sites, pools and attestations")
    BILLING_READ = "billing:read", _("Read invoices")
    GREEN_WRITE = "green:write", _("Upload green certificates")


class OrganizationAPIKey(PublicIdModel, AbstractAPIKey):
    """An organisation's API key: shown once, stored hashed (djangorestframework-api-key), scoped, revocable."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    scopes = ArrayField(models.CharField(max_length=40, choices=ApiScope.choices), default=list, blank=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = _("API key")  # type: ignore[assignment]  # the library's Meta declares a plain str
        verbose_name_plural = _("API keys")  # type: ignore[assignment]
