"""Pagination that refuses what it cannot read: ``?limit=abc`` is a 400 in the error envelope, not ignored."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """``limit`` (1..max_limit, default ``default_limit``) and ``offset`` (>= 0); anything else is refused."""

    def _query_integer(self, request: Request, name: str, *, min_value: int) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        field = serializers.IntegerField(min_value=min_value, max_value=self.max_limit if name == "limit" else None)
        try:
            return field.run_validation(raw)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({name: exc.detail}) from None

    def get_limit(self, request: Request) -> int | None:
        limit = self._query_integer(request, self.limit_query_param, min_value=1)
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Request) -> int:
        return self._query_integer(request, self.offset_query_param, min_value=0) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"].update({"minimum": 1, **({"maximum": self.max_limit} if self.max_limit else {})})
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"]["minimum"] = 0
        return parameters
