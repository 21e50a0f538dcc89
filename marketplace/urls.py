from django.urls import path

from marketplace import views, views_tokens

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
    path("market/", views.market, name="market"),
    path("market/depth/", views.market_depth, name="market-depth"),
    path("market/bids/", views.bid_list, name="bid-list"),
    path("market/bids/new/", views.bid_create, name="bid-create"),
    path("market/bids/preview/", views.bid_preview, name="bid-preview"),
    path("market/bids/<uuid:bid_id>/cancel/", views.bid_cancel, name="bid-cancel"),
    path("market/offers/", views.offer_list, name="offer-list"),
    path("market/offers/<uuid:offer_id>/cancel/", views.offer_cancel, name="offer-cancel"),
    path("market/leases/", views.lease_list, name="lease-list"),
    path("market/leases/<uuid:lease_id>/respond/", views.lease_respond, name="lease-respond"),
    path("supply/attestations/<uuid:attestation_id>/", views.attestation_detail, name="attestation-detail"),
    path("market/tokens/endpoints/", views_tokens.token_endpoint_list, name="token-endpoint-list"),
    path("market/tokens/endpoints/new/", views_tokens.token_endpoint_create, name="token-endpoint-create"),
    path(
        "market/tokens/endpoints/<uuid:endpoint_id>/status/",
        views_tokens.token_endpoint_status,
        name="token-endpoint-status",
    ),
    path("market/tokens/bids/", views_tokens.token_bid_list, name="token-bid-list"),
    path("market/tokens/bids/new/", views_tokens.token_bid_create, name="token-bid-create"),
    path("market/tokens/bids/preview/", views_tokens.token_bid_preview, name="token-bid-preview"),
    path("market/tokens/bids/<uuid:token_bid_id>/cancel/", views_tokens.token_bid_cancel, name="token-bid-cancel"),
    path("market/tokens/contracts/", views_tokens.token_contract_list, name="token-contract-list"),
    path(
        "market/tokens/contracts/<uuid:contract_id>/respond/",
        views_tokens.token_contract_respond,
        name="token-contract-respond",
    ),
]
