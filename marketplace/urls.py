from django.urls import path

from marketplace import views

app_name = "marketplace"

urlpatterns = [
    path("catalog/", views.catalog, name="catalog"),
    path("catalog/<uuid:model_id>/", views.catalog_model, name="catalog-model"),
    path("supply/sites/", views.site_list, name="site-list"),
    path("supply/sites/new/", views.site_create, name="site-create"),
    path("supply/sites/validate/", views.site_validate, name="site-validate"),
    path("supply/sites/<uuid:site_id>/", views.site_detail, name="site-detail"),
    path("supply/sites/<uuid:site_id>/edit/", views.site_edit, name="site-edit"),
    path("supply/sites/<uuid:site_id>/status/", views.site_status, name="site-status"),
    path("supply/pools/", views.pool_list, name="pool-list"),
    path("supply/pools/new/", views.pool_create, name="pool-create"),
    path("supply/pools/validate/", views.pool_validate, name="pool-validate"),
    path("supply/pools/<uuid:pool_id>/", views.pool_detail, name="pool-detail"),
    path("supply/pools/<uuid:pool_id>/edit/", views.pool_edit, name="pool-edit"),
    path("supply/pools/<uuid:pool_id>/status/", views.pool_status, name="pool-status"),
    path("supply/pools/<uuid:pool_id>/attest/", views.pool_attest, name="pool-attest"),
    path("market/leases/", views.lease_list, name="lease-list"),
    path("market/leases/<uuid:lease_id>/respond/", views.lease_respond, name="lease-respond"),
    path("supply/attestations/<uuid:attestation_id>/", views.attestation_detail, name="attestation-detail"),
]
