from django.urls import path

from core.tenancy import public
from metering import views

app_name = "metering"

urlpatterns = [
    path("provider/signing-keys/", views.signing_keys, name="signing-keys"),
    path("provider/signing-keys/<uuid:signing_key_id>/revoke/", views.signing_key_revoke, name="signing-key-revoke"),
    path("provider/ingest/", views.ingest_health, name="ingest-health"),
    path("usage/", views.usage_overview, name="usage"),
    path("usage/leases/<uuid:lease_id>/", views.lease_usage, name="lease-usage"),
    path("usage/contracts/<uuid:contract_id>/", views.contract_usage, name="contract-usage"),
    path("usage/disputes/<uuid:dispute_id>/", views.dispute_detail, name="dispute-detail"),
    path("verify/batches/<uuid:batch_id>/", public(views.batch_verify), name="batch-verify"),
]
