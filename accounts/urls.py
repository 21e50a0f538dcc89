from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from accounts import views
from accounts.forms import EmailLoginForm
from core.tenancy import public

app_name = "accounts"

login_view = auth_views.LoginView.as_view(
    template_name="accounts/login.html", authentication_form=EmailLoginForm, redirect_authenticated_user=True
)
password_reset_view = auth_views.PasswordResetView.as_view(
    template_name="accounts/password_reset.html",
    email_template_name="accounts/email/password_reset.txt",
    subject_template_name="accounts/email/password_reset_subject.txt",
    success_url=reverse_lazy("accounts:password-reset-done"),
)
password_reset_done_view = auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html")
password_reset_confirm_view = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html", success_url=reverse_lazy("accounts:password-reset-complete")
)
password_reset_complete_view = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html"
)

urlpatterns = [
    path("", public(views.home), name="home"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("accounts/signup/", public(views.signup), name="signup"),
    path("accounts/login/", public(login_view), name="login"),
    path("accounts/logout/", public(auth_views.LogoutView.as_view()), name="logout"),
    path("accounts/password-reset/", public(password_reset_view), name="password-reset"),
    path("accounts/password-reset/sent/", public(password_reset_done_view), name="password-reset-done"),
    path("accounts/reset/<uidb64>/<token>/", public(password_reset_confirm_view), name="password-reset-confirm"),
    path("accounts/reset/done/", public(password_reset_complete_view), name="password-reset-complete"),
    path("invitations/<str:token>/", public(views.invitation_accept), name="invitation-accept"),
    path("invitations/<str:token>/signup/", public(views.invitation_signup), name="invitation-signup"),
    path("org/switch/", views.organization_switch, name="organization-switch"),
    path("settings/organization/", views.organization_settings, name="organization-settings"),
    path("settings/members/", views.members, name="members"),
    path("settings/members/<uuid:membership_id>/role/", views.member_role, name="member-role"),
    path("settings/members/<uuid:membership_id>/remove/", views.member_remove, name="member-remove"),
    path("settings/invitations/<uuid:invitation_id>/revoke/", views.invitation_revoke, name="invitation-revoke"),
    path("settings/api-keys/", views.api_keys, name="api-keys"),
    path("settings/api-keys/<uuid:api_key_id>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("settings/company/", views.company_profile, name="company-profile"),
    path("settings/company/uscc-check/", views.uscc_check, name="uscc-check"),
]
