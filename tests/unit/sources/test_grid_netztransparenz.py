"""netztransparenz.de: OAuth2 client-credentials token, per-TSO CSV with decimal commas."""

from __future__ import annotations

from datetime import timedelta

import pytest

from metrify.sources import PayloadError, netztransparenz
from metrify.sources.http import AuthError, Endpoint
from tests.fake_apis import DAY, endpoint, fixture

START, END = DAY + timedelta(hours=11), DAY + timedelta(hours=12)


def test_csv_with_decimal_commas_and_one_column_per_tso() -> None:
    frame = netztransparenz.parse_tso_csv(fixture("grid/netztransparenz_hochrechnung_solar.csv").decode())
    assert list(frame.columns) == ["50Hertz", "Amprion", "TenneT", "TransnetBW"]
    assert frame.iloc[0].tolist() == [5120.25, 3320.0, 7410.125, 2100.5]
    assert frame.iloc[1]["TransnetBW"] == 1234.5 and frame.iloc[1].isna()["Amprion"]
    assert str(frame.index[1]) == "2026-11-22 10:15:00+00:00"


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("<html>login</html>", "unexpected header"),
        ("Datum;von;Zeitzone von;bis;Zeitzone bis;50Hertz (MW)\n", "one column per TSO"),
        (fixture("grid/netztransparenz_hochrechnung_solar.csv").decode().replace("5120,250", "viel"), "German decimal"),
    ],
)
def test_malformed_csv(raw: str, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        netztransparenz.parse_tso_csv(raw)


def _client(stack) -> netztransparenz.NetztransparenzClient:
    return netztransparenz.NetztransparenzClient(endpoint(stack, "netztransparenz_api"))


def test_token_is_fetched_once_and_data_parsed(clean_fakes) -> None:
    client = _client(clean_fakes)
    solar = netztransparenz.fetch_hochrechnung(client, "Solar", START, END)
    wind = netztransparenz.fetch_hochrechnung(client, "Wind", START, END)
    assert len(solar) == 4 and len(wind) == 4 and (solar["TenneT"] > 0).all()
    paths = [r.path for r in clean_fakes["netztransparenz"].requests]
    assert paths.count("/users/connect/token") == 1, "the token is cached"


def test_rejected_token_is_renewed_once(clean_fakes) -> None:
    client = _client(clean_fakes)
    netztransparenz.fetch_hochrechnung(client, "Solar", START, END)
    clean_fakes["netztransparenz"].api.revoke_tokens()
    assert len(netztransparenz.fetch_hochrechnung(client, "Solar", START, END)) == 4
    assert [r.path for r in clean_fakes["netztransparenz"].requests].count("/users/connect/token") == 2


def test_wrong_client_secret_names_the_connection(clean_fakes) -> None:
    conn = clean_fakes.connections["netztransparenz_api"]
    bad = Endpoint.from_dict("netztransparenz_api", {**conn, "password": "wrong"})
    with pytest.raises(AuthError, match="client credentials.*connection 'netztransparenz_api'"):
        netztransparenz.fetch_hochrechnung(netztransparenz.NetztransparenzClient(bad), "Wind", START, END)


def test_schema_drift_in_the_header(clean_fakes) -> None:
    clean_fakes["netztransparenz"].inject("malformed", match="hochrechnung")
    with pytest.raises(PayloadError, match="one column per TSO"):
        netztransparenz.fetch_hochrechnung(_client(clean_fakes), "Solar", START, END)
