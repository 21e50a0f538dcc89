from django.urls import path

from green import views

app_name = "green"

urlpatterns = [
    path("provider/green/lots/", views.lots, name="lots"),
    path("provider/green/lots/<uuid:lot_id>/withdraw/", views.lot_withdraw, name="lot-withdraw"),
]
