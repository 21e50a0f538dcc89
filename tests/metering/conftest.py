import pytest

from tests.metering.test_usage_ingest import new_provider


@pytest.fixture
def provider(make_org):
    """A provider with a signing key (``.private_key``) and one 8-accelerator lease (``.lease_id``)."""
    return new_provider(make_org)
