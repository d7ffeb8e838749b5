"""The Glue seam on moto: create what is missing, never change what exists, errors as ours."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rearcquest.aws.catalog import Catalog, make_glue_client
from rearcquest.data.athena import survey_glue_tables, table_input
from rearcquest.errors import StorageError


@pytest.fixture
def glue() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        client = make_glue_client(region="us-east-1")
        client.create_database(DatabaseInput={"Name": "rq"})
        yield client


def inputs(survey: str = "cu") -> list[dict[str, Any]]:
    return [table_input(t) for t in survey_glue_tables("bucket", survey)]


def test_missing_tables_are_created_as_declared(glue: Any) -> None:
    catalog = Catalog(glue, "rq")
    assert catalog.ensure_tables(inputs()) == ["cu_observations", "cu_series"]
    found = glue.get_table(DatabaseName="rq", Name="cu_observations")["Table"]
    wanted = inputs()[0]
    assert found["StorageDescriptor"]["Columns"] == wanted["StorageDescriptor"]["Columns"]
    assert found["StorageDescriptor"]["SerdeInfo"] == wanted["StorageDescriptor"]["SerdeInfo"]
    assert found["PartitionKeys"] == wanted["PartitionKeys"]
    assert found["Parameters"] == wanted["Parameters"]
    assert found["TableType"] == "EXTERNAL_TABLE"
    # A second run finds them.
    assert catalog.ensure_tables(inputs()) == []


def test_an_existing_table_is_left_as_it_is(glue: Any) -> None:
    glue.create_table(DatabaseName="rq", TableInput={"Name": "cu_series", "Description": "mine"})
    assert Catalog(glue, "rq").ensure_tables(inputs()) == ["cu_observations"]
    assert glue.get_table(DatabaseName="rq", Name="cu_series")["Table"]["Description"] == "mine"


class _Racing:
    """A Glue client on which another worker creates each table between our read and create."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def get_table(self, **kwargs: Any) -> Any:
        try:
            return self.client.get_table(**kwargs)
        finally:
            table = next(t for t in inputs() if t["Name"] == kwargs["Name"])
            self.client.create_table(DatabaseName=kwargs["DatabaseName"], TableInput=table)


def test_a_table_created_meanwhile_by_another_worker_is_no_error(glue: Any) -> None:
    assert Catalog(_Racing(glue), "rq").ensure_tables(inputs()) == []
    assert len(glue.get_tables(DatabaseName="rq")["TableList"]) == 2


def test_a_missing_database_is_one_clear_error(glue: Any) -> None:
    with pytest.raises(StorageError, match="the Glue database 'other' does not exist") as info:
        Catalog(glue, "other").ensure_tables(inputs())
    assert info.value.code == "EntityNotFoundException"  # Glue's, so no caller reads botocore's
    assert glue.get_tables(DatabaseName="rq")["TableList"] == []


def test_a_refusal_names_the_table(glue: Any) -> None:
    bad = [{**inputs()[0], "Name": ""}]
    with pytest.raises(StorageError, match=r"could not (read|create) the Glue table rq\."):
        Catalog(glue, "rq").ensure_tables(bad)


def test_the_endpoint_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", "http://127.0.0.1:9")
    client = make_glue_client()
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "us-east-1"
