from django.urls import path

from core.tenancy import public
from metering import views

app_name = "metering"

urlpatterns = [
    path("provider/signing-keys/", views.signing_keys, name="signing-keys"),
    path("provider/signing-keys/<uuid:signing_key_id>/revoke/", views.signing_key_revoke, name="signing-key-revoke"),
    path("provider/ingest/", views.ingest_health, name="ingest-health"),
    path("verify/batches/<uuid:batch_id>/", public(views.batch_verify), name="batch-verify"),
]
