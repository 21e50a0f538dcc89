from __future__ import annotations

from dataclasses import dataclass

import pytest

from accounts.models import Organization
from tests.vouchers import factories


@dataclass
class World:
    issuer: Organization
    buyer: Organization
    provider: Organization
    other_provider: Organization


@pytest.fixture
def world(make_org) -> World:
    issuer = make_org("issuer", name="北京市经济和信息化局")
    buyer = make_org("buyer", name="北京灵巧机器人科技有限公司")
    provider = make_org("provider", name="宁夏中卫云谷智算中心")
    other = make_org("provider", name="贵州贵安算力科技有限公司")
    factories.profile(issuer, industry="other", size_class="large")
    factories.profile(buyer, legal_representative="赵北", shareholders=[("赵北", "", "60")])
    factories.profile(provider, province="64", city="中卫市", legal_representative="马云峰")
    factories.profile(other, province="52", city="贵安新区", legal_representative="杨黔")
    return World(issuer, buyer, provider, other)
