import pytest


@pytest.mark.django_db
def test_home_and_dashboard_render_for_each_kind(client, make_org, client_for):
    assert client.get("/").status_code == 200
    for kind in ("buyer", "provider", "issuer", "platform"):
        org = make_org(kind)
        response = client_for(org.owner).get("/dashboard/")
        assert response.status_code == 200
        assert org.name in response.content.decode()
