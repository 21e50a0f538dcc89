from django.urls import path

from core.tenancy import public
from green import views

app_name = "green"

urlpatterns = [
    path("provider/green/lots/", views.lots, name="lots"),
    path("provider/green/lots/<uuid:lot_id>/withdraw/", views.lot_withdraw, name="lot-withdraw"),
    path("green/", views.buyer_overview, name="buyer"),
    path("green/statements/<uuid:statement_id>/", views.statement_detail, name="statement"),
    path("green/statements/<uuid:statement_id>/pdf/", views.statement_pdf, name="statement-pdf"),
    path("green/hubs/", public(views.hub_shares), name="hubs"),
    path("verify/green/<str:code>/", public(views.statement_verify), name="verify"),
]
