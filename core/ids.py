"""Public identifiers: a BigAutoField stays inside; a random UUID goes into URLs, the API and documents."""

import uuid

from django.db import models


def new_public_id() -> uuid.UUID:
    return uuid.uuid4()


class PublicIdModel(models.Model):
    """Abstract base for every model whose rows are referred to outside the database."""

    public_id = models.UUIDField(default=new_public_id, unique=True, editable=False, db_index=True)

    class Meta:
        abstract = True
