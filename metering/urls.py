from django.urls import path

from metering import views

app_name = "metering"

urlpatterns = [
    path("provider/signing-keys/", views.signing_keys, name="signing-keys"),
    path("provider/signing-keys/<uuid:signing_key_id>/revoke/", views.signing_key_revoke, name="signing-key-revoke"),
]
