from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.i18n import set_language
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from core import views as core_views
from core.tenancy import public

api_v1 = [
    path("", include("accounts.apis")),
    path("", include("marketplace.apis")),
    path("", include("metering.apis")),
    path("", include("vouchers.apis")),
    path("", include("green.apis")),
]

handler404 = "core.views.page_not_found"

urlpatterns = [
    path("", include("accounts.urls")),
    path("", include("marketplace.urls")),
    path("", include("metering.urls")),
    path("", include("vouchers.urls")),
    path("", include("green.urls")),
    path("", include("billing.urls")),
    path("i18n/setlang/", public(set_language), name="set_language"),
    path("healthz", public(core_views.healthz), name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", public(SpectacularAPIView.as_view(permission_classes=[])), name="api-schema"),
    path(
        "api/docs/",
        public(SpectacularRedocView.as_view(url_name="api-schema", permission_classes=[])),
        name="api-docs",
    ),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
