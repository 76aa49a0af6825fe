"""The fake APIs themselves: real auth and error formats, and the background process for `make up`."""

from __future__ import annotations

import json

import requests

from metrify_dev import fakes as fake_apis
from metrify_dev.fakes import CONNECTION_IDS


def test_fakes_answer_auth_errors_like_the_real_apis(clean_fakes) -> None:
    owm = requests.get(
        clean_fakes["openweathermap"].url + "/data/2.5/weather",
        params={"lat": 52.52, "lon": 13.4, "appid": "wrong"},
        timeout=5,
    )
    assert owm.status_code == 401 and owm.json()["cod"] == 401 and "Invalid API key" in owm.json()["message"]
    entsoe = requests.get(clean_fakes["entsoe"].url + "/api", params={"securityToken": "wrong"}, timeout=5)
    assert entsoe.status_code == 401
    grid = requests.get(
        clean_fakes["gridradar"].url + "/query", params={"metric": "frequency-ucte-median-1s"}, timeout=5
    )
    assert grid.status_code == 401
    bad = requests.get(
        clean_fakes["openweathermap"].url + "/data/2.5/weather",
        params={"lat": "x", "lon": 13.4, "appid": clean_fakes.connections["openweathermap_api"]["password"]},
        timeout=5,
    )
    assert bad.status_code == 400 and bad.json() == {"cod": "400", "message": "wrong latitude"}


def test_connections_carry_random_keys_in_the_password(clean_fakes) -> None:
    conns = clean_fakes.connections
    assert set(conns) == set(CONNECTION_IDS.values())
    assert all(c["conn_type"] == "http" and c["host"] == "127.0.0.1" for c in conns.values())
    assert "password" not in conns["brightsky_api"], "Bright Sky needs no key"
    again = fake_apis.start_fakes()
    try:
        assert again.connections["entsoe_api"]["password"] != conns["entsoe_api"]["password"]
    finally:
        again.stop()


def test_background_process_up_and_down(tmp_path) -> None:
    info = fake_apis.up(tmp_path)
    try:
        assert fake_apis.up(tmp_path)["pid"] == info["pid"], "up is idempotent"
        state = tmp_path / "fakes" / "fakes.json"
        assert state.stat().st_mode & 0o077 == 0, "the state file holds keys: owner-only"
        conn = json.loads(state.read_text())["connections"]["brightsky_api"]
        answer = requests.get(
            f"http://127.0.0.1:{conn['port']}/weather",
            params={
                "lat": 48.137,
                "lon": 11.576,
                "date": "2026-11-22T10:00:00+00:00",
                "last_date": "2026-11-22T10:00:00+00:00",
                "units": "si",
            },
            timeout=5,
        )
        assert answer.status_code == 200 and answer.json()["sources"][0]["station_name"] == "MÜNCHEN"
    finally:
        assert fake_apis.down(tmp_path)
    assert fake_apis.read_fakes(tmp_path) is None and not fake_apis.down(tmp_path)
