from csp.decorators import csp_update
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.i18n import set_language
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from core import views as core_views
from core.tenancy import public
from core.throttling import AnonymousRateThrottle

api_v1 = [
    path("", include("accounts.apis")),
    path("", include("marketplace.apis")),
    path("", include("metering.apis")),
    path("", include("vouchers.apis")),
    path("", include("green.apis")),
]

handler404 = "core.views.page_not_found"

# The Redoc API docs are drf-spectacular's page, not the portal's: Redoc comes from its CDN with Google's fonts,
# injects its own <style> elements (the page has one too) and searches in a blob: worker. Only this page
# relaxes the Content-Security-Policy of settings.CONTENT_SECURITY_POLICY; no script of ours runs on it.
REDOC_CSP = {
    "script-src": ["https://cdn.jsdelivr.net"],
    "style-src": ["'unsafe-inline'", "https://fonts.googleapis.com"],
    "font-src": ["https://fonts.gstatic.com"],
    "img-src": ["https:"],
    "worker-src": ["blob:"],
}

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
    path(
        "api/schema/",
        public(SpectacularAPIView.as_view(permission_classes=[], throttle_classes=[AnonymousRateThrottle])),
        name="api-schema",
    ),
    path(
        "api/docs/",
        public(
            csp_update(REDOC_CSP)(
                SpectacularRedocView.as_view(
                    url_name="api-schema", permission_classes=[], throttle_classes=[AnonymousRateThrottle]
                )
            )
        ),
        name="api-docs",
    ),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
