from django.urls import path

from vouchers import views

app_name = "vouchers"

urlpatterns = [
    # Issuer console
    path("issuer/programmes/", views.issuer_programs, name="issuer-programs"),
    path("issuer/programmes/<uuid:program_id>/", views.issuer_program, name="issuer-program"),
    path(
        "issuer/programmes/<uuid:program_id>/redemptions.csv",
        views.issuer_program_export,
        {"fmt": "csv"},
        name="issuer-program-export-csv",
    ),
    path(
        "issuer/programmes/<uuid:program_id>/redemptions.xlsx",
        views.issuer_program_export,
        {"fmt": "xlsx"},
        name="issuer-program-export-xlsx",
    ),
    path("issuer/applications/", views.issuer_applications, name="issuer-applications"),
    path("issuer/applications/<uuid:review_id>/", views.issuer_review, name="issuer-review"),
    path("issuer/grants/", views.issuer_grants, name="issuer-grants"),
    path("issuer/grants/<uuid:grant_id>/revoke/", views.issuer_grant_revoke, name="issuer-grant-revoke"),
    path("issuer/flags/", views.issuer_flags, name="issuer-flags"),
    path("issuer/redemptions/", views.issuer_redemptions, name="issuer-redemptions"),
    path(
        "issuer/redemptions/<uuid:redemption_id>/evidence/",
        views.issuer_redemption_evidence,
        name="issuer-redemption-evidence",
    ),
    path(
        "issuer/redemptions/<uuid:redemption_id>/paid/",
        views.issuer_redemption_settle,
        name="issuer-redemption-paid",
    ),
    # Buyer
    path("vouchers/", views.buyer_vouchers, name="buyer-vouchers"),
    path("vouchers/quote/", views.buyer_quote, name="buyer-quote"),
    path("vouchers/apply/", views.buyer_apply, name="buyer-apply"),
    path("vouchers/applications/<uuid:application_id>/", views.buyer_application, name="buyer-application"),
    path("vouchers/attachments/<uuid:attachment_id>/", views.attachment_download, name="attachment"),
]
