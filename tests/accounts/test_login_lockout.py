"""Login lockout (django-axes, the project's real settings): 5 failures lock one address from one IP for 15 minutes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts:login")
WRONG = "not-the-password-at-all"


def attempt(client: Client, email: str, password: str, url: str = LOGIN, **extra):
    return client.post(url, {"username": email, "password": password}, **extra)


def pass_cool_off() -> None:
    """What 15 minutes and a second do to the recorded attempts (axes counts those inside the cool-off window)."""
    for row in AccessAttempt.objects.all():
        row.attempt_time -= settings.AXES_COOLOFF_TIME + timedelta(seconds=1)
        row.save(update_fields=["attempt_time"])


def test_the_real_policy_is_five_failures_per_user_and_ip_for_fifteen_minutes():
    assert settings.AXES_ENABLED is True
    assert settings.AXES_FAILURE_LIMIT == 5
    assert timedelta(minutes=15) == settings.AXES_COOLOFF_TIME
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AXES_RESET_ON_SUCCESS is True
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"


def test_five_wrong_passwords_lock_out_the_right_one_until_the_cool_off_has_passed(make_user):
    user = make_user()
    client = Client()
    for _ in range(4):
        response = attempt(client, user.email, WRONG)
        assert response.status_code == 200  # the form again, with "wrong e-mail or password"
        assert "_auth_user_id" not in client.session
    response = attempt(client, user.email, WRONG)  # the fifth failure locks
    assert response.status_code == 429

    response = attempt(client, user.email.upper(), PASSWORD, HTTP_ACCEPT_LANGUAGE="en")  # the right one, any case
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    page = response.content.decode()
    assert "Too many failed log-in attempts" in page
    assert "blocked for 15 minutes" in page
    assert f'value="{user.email}"' in page  # the address stays in the form beside the message
    assert response["Retry-After"] == "900"

    response = attempt(Client(), user.email, PASSWORD, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 429
    assert 'data-testid="login-locked"' in response.content.decode()

    pass_cool_off()
    response = attempt(client, user.email, PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:dashboard")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_another_user_and_another_ip_are_not_locked(make_user):
    victim, other = make_user(), make_user()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), victim.email, WRONG)
    assert attempt(Client(), victim.email, PASSWORD).status_code == 429

    other_client = Client()
    assert attempt(other_client, other.email, PASSWORD).status_code == 302
    assert other_client.session["_auth_user_id"] == str(other.pk)

    elsewhere = Client(REMOTE_ADDR="203.0.113.7")  # the same address from another network
    assert attempt(elsewhere, victim.email, PASSWORD).status_code == 302


def test_a_success_resets_the_count(make_user):
    user = make_user()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(Client(), user.email, WRONG)
    assert attempt(Client(), user.email, PASSWORD).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(Client(), user.email, WRONG).status_code == 200
    assert attempt(Client(), user.email, PASSWORD).status_code == 302


def test_the_admin_login_is_covered_too(make_user):
    staff = make_user(is_staff=True, is_superuser=True)
    url = reverse("admin:login")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), staff.email, WRONG, url=url)
    client = Client()
    response = attempt(client, staff.email, PASSWORD, url=url)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert 'data-testid="login-locked"' in response.content.decode()
    # The portal's login is the same account from the same IP: locked as well.
    assert attempt(Client(), staff.email, PASSWORD).status_code == 429
    pass_cool_off()
    response = attempt(client, staff.email, PASSWORD, url=url + "?next=/admin/")
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_behind_a_proxy_the_lock_follows_the_client_address_the_proxy_appended(make_user, settings):
    """SUANLI_PROXY_COUNT=1: every request comes from the proxy's address; the client is the right-most entry of
    X-Forwarded-For, and what the client itself put to the left of it changes nothing."""
    settings.AXES_IPWARE_PROXY_COUNT = 1
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    user = make_user()
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for n in range(5):
        attempt(Client(), user.email, WRONG, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.7", **proxy)
    locked = attempt(Client(), user.email, PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.7", **proxy)
    assert locked.status_code == 429  # a forged left-hand entry does not escape the lock
    other = Client()
    assert attempt(other, user.email, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.8", **proxy).status_code == 302
    assert "_auth_user_id" in other.session  # another client behind the same proxy is not locked out
