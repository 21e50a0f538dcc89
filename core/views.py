from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: API clients get the error envelope (``/api/v1/pools/not-a-uuid``), people the page."""
    if request.path.startswith("/api/"):
        from core.errors import MSG_NOT_FOUND, FieldError

        error = FieldError(code="not_found", message=MSG_NOT_FOUND)
        return JsonResponse({"errors": [error.as_dict()]}, status=404, json_dumps_params={"ensure_ascii": False})
    return defaults.page_not_found(request, exception)
