"""The client's own promises: conditions refuse truthiness, pandas stays out of ``import
metrana``, the API key is sent but never shown, and the server's refusals reach the caller."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import metrana
from metrana.query import (
    AttrFilter,
    MetranaQueryError,
    QueryClient,
    QueryRequestError,
    SeriesFilter,
    SeriesSummary,
)
from metrana.server import background_server


def test_a_condition_has_no_truth_value() -> None:
    """``and``/``or`` and chained comparisons would silently drop a condition: they raise."""
    low = AttrFilter("config/lr") < 0.01
    with pytest.raises(TypeError, match="combine conditions with & .* and \\|"):
        bool(low)
    with pytest.raises(TypeError, match="&"):
        _ = low and (AttrFilter("config/bs") > 3)
    with pytest.raises(TypeError, match="&"):
        _ = 0 < AttrFilter("config/lr") < 1  # chained: needs bool() of the first half
    with pytest.raises(TypeError, match="&"):
        _ = low or SeriesFilter("loss").last() < 1


def test_conditions_combine_into_one_tree() -> None:
    a, b, c = AttrFilter("a") < 1, AttrFilter("b") == "x", SeriesFilter("loss").max() >= 2
    assert ((a & b) & c).tree == {"and": [a.tree, b.tree, c.tree]}
    assert (a | (b & c)).tree == {"or": [a.tree, {"and": [b.tree, c.tree]}]}
    assert c.tree == {"series": {"metric": "loss"}, "fn": "max", "op": ">=", "value": 2}
    with pytest.raises(TypeError, match="combines two conditions"):
        _ = a & True  # type: ignore[operator]
    with pytest.raises(TypeError, match="a number, a string or a bool"):
        _ = AttrFilter("a") < [1, 2]
    with pytest.raises(ValueError, match="unknown summary function 'median'"):
        SeriesSummary("loss", "median")


def test_import_metrana_does_not_import_pandas() -> None:
    """Nor anything else of the query and import extras: ``import metrana`` stays light."""
    heavy = ("pandas", "pyarrow", "tensorboard", "google_crc32c", "mlflow", "tqdm",
             "metrana.query", "metrana._import", "metrana._export_parquet")
    code = ("import sys, metrana; metrana.init; import metrana._cli; "
            f"loaded = [m for m in {heavy!r} if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_metrana_query_without_pandas_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['pandas'] = None\n"
            "try:\n    import metrana.query\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "pip install 'metrana[query]'" in out


def test_api_key_is_sent_and_never_shown(tmp_path: Path) -> None:
    key = "s3cr3t-query-key"
    with background_server(tmp_path / "s.sqlite3", api_key=key) as info:
        with metrana.session(workspace_name="w", project_name="p", run_name="r",
                             ingestion_url=info.url, api_key=key, config={"lr": 0.5}) as s:
            s.log("loss", 1.0)
        with QueryClient("w", "p", url=info.url, api_key=key) as client:
            assert key not in repr(client)
            frame = client.fetch_runs(attributes=["config/lr"])
            assert frame["config/lr"].tolist() == [0.5]
            with pytest.raises(QueryRequestError) as refused:
                client.fetch_runs(filter=AttrFilter("config/nope") < 1)
            assert key not in str(refused.value)
        with QueryClient("w", "p", url=info.url, api_key="wrong") as client, \
                pytest.raises(MetranaQueryError, match=r"refused the API key given \(HTTP 401\): "
                                                      "invalid API key") as wrong:
            client.fetch_runs()
        assert "wrong" not in str(wrong.value) and wrong.value.status == 401


def test_environment_variables_as_for_init(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                           ) -> None:
    """METRANA_INGESTION_URL and METRANA_API_KEY, as ``init`` reads them."""
    with background_server(tmp_path / "s.sqlite3", api_key="k") as info:
        with metrana.session(workspace_name="w", project_name="p", run_name="r",
                             ingestion_url=info.url, api_key="k") as s:
            s.log("loss", 1.0)
        monkeypatch.setenv("METRANA_INGESTION_URL", info.url + "/v1")
        monkeypatch.setenv("METRANA_API_KEY", "k")
        with QueryClient("w", "p") as client:
            assert client.fetch_runs()["name"].tolist() == ["r"]


def test_unreachable_server_and_missing_database(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with QueryClient("w", "p", url="http://127.0.0.1:9", transport=httpx.MockTransport(refuse)
                     ) as client, pytest.raises(MetranaQueryError, match="cannot reach"):
        client.fetch_runs()
    with pytest.raises(MetranaQueryError, match="no metrana database"):
        QueryClient("w", "p", db=tmp_path / "missing.sqlite3")
    with pytest.raises(metrana.MetranaConfigError):
        QueryClient("w", "p", url="ftp://example.com")


def test_query_all_lists_exactly_the_public_names() -> None:
    """``metrana.query.__all__`` is sorted and is what the package shows; every error is a
    MetranaError."""
    import metrana.query as query

    public = {n for n in dir(query) if not n.startswith("_")} - {"annotations", "pandas"}
    assert sorted(query.__all__) == query.__all__
    assert set(query.__all__) == public
    assert all(issubclass(getattr(query, n), metrana.MetranaError)
               for n in query.__all__ if n.endswith("Error"))
