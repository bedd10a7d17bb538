"""The app starts and answers in French."""


def test_home_page_is_french(client):
    response = client.get("/")
    assert response.status_code == 200
    assert 'lang="fr"' in response.text
    assert "Mon compte ameli" in response.text
