"""The Athena part of the pipeline stack: the Glue database and tables, the workgroup with its
results bucket and limits, the reports as named queries, and who may run them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from aws_cdk.assertions import Template

from rearcquest.data.athena import (
    OBSERVATIONS_COLUMNS,
    PARQUET_INPUT,
    PARQUET_SERDE,
    POPULATION_COLUMNS,
    SERIES_COLUMNS,
    named_queries,
    survey_glue_tables,
    table_input,
)
from rearcquest.data.tables import QUERY_NAMES, named_query
from rearcquest_infra.pipeline_stack import (
    ATHENA_ENGINE,
    ATHENA_RESULTS_DAYS,
    ATHENA_RESULTS_PREFIX,
)
from rearcquest_infra.settings import InfraSettings

from .cfn_helpers import CONTACT, Templates, as_list, one, render, resources, role_statements

S3 = "arn:${AWS::Partition}:s3:::"
BLS = "rearcquest-bls-${AWS::AccountId}-${AWS::Region}"
RESULTS = "rearcquest-athena-${AWS::AccountId}-${AWS::Region}"
TABLES = f"s3://{BLS}/tables/"


@pytest.fixture(scope="session")
def surveys_template(synth: Callable[[dict[str, str]], Templates]) -> Template:
    """Fan-out over pr, cu and ce, with a scan limit of its own."""
    return synth({"fanOut": "true", "surveys": "cu,pr,ce", "athenaScanLimitMb": "200"})[
        "Rearcquest"
    ]


def _tables(template: Template) -> dict[str, dict[str, Any]]:
    """The Glue tables' TableInput, rendered, by table name."""
    found: dict[str, dict[str, Any]] = {}
    for table in resources(template.to_json(), "AWS::Glue::Table").values():
        props = table["Properties"]
        assert props["CatalogId"] == {"Ref": "AWS::AccountId"}
        assert props["DatabaseName"] == "rearcquest"
        found[props["TableInput"]["Name"]] = render(props["TableInput"])
    return found


def _columns(pairs: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"Name": name, "Type": type_} for name, type_ in pairs]


def test_one_glue_database_named_after_the_stack(default_template: Template) -> None:
    default_template.resource_count_is("AWS::Glue::Database", 1)
    default_template.has_resource_properties(
        "AWS::Glue::Database",
        {"CatalogId": {"Ref": "AWS::AccountId"}, "DatabaseInput": {"Name": "rearcquest"}},
    )


def test_pr_and_population_tables_by_default(default_template: Template) -> None:
    assert sorted(_tables(default_template)) == ["population", "pr_observations", "pr_series"]


def test_observations_are_parquet_partitioned_by_an_injected_file(
    default_template: Template,
) -> None:
    table = _tables(default_template)["pr_observations"]
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["PartitionKeys"] == [{"Name": "file", "Type": "string"}]
    storage = table["StorageDescriptor"]
    assert storage["Columns"] == _columns(OBSERVATIONS_COLUMNS)
    # The types rearcquest.data.tables writes (tests/test_athena.py reads them from the Parquet).
    assert {c["Name"]: c["Type"] for c in storage["Columns"]} == {
        "series_id": "string",
        "year": "smallint",
        "period": "string",
        "value": "decimal(18,3)",
        "decimals": "tinyint",
        "value_text": "string",
        "footnote_codes": "string",
    }
    assert storage["Location"] == f"{TABLES}pr/observations/"
    assert storage["InputFormat"] == PARQUET_INPUT
    assert storage["SerdeInfo"] == {"SerializationLibrary": PARQUET_SERDE}
    params = table["Parameters"]
    assert params["classification"] == "parquet"
    assert params["projection.enabled"] == "true"
    # Injected: file names are not known at deploy time, and a query must name its file.
    assert params["projection.file.type"] == "injected"
    assert params["storage.location.template"] == f"{TABLES}pr/observations/file=${{file}}/"


def test_series_reads_its_own_folder_not_the_observations(default_template: Template) -> None:
    tables = _tables(default_template)
    series = tables["pr_series"]["StorageDescriptor"]
    # Athena reads every object under a location, subfolders included: a series table at
    # tables/pr/ would read tables/pr/observations/ too.
    assert series["Location"] == f"{TABLES}pr/series/"
    assert series["Columns"] == _columns(SERIES_COLUMNS["pr"])
    assert {"sector_name", "measure_text", "title"} <= {c["Name"] for c in series["Columns"]}
    population = tables["population"]["StorageDescriptor"]
    assert population["Location"] == f"{TABLES}population/"
    assert population["Columns"] == _columns(POPULATION_COLUMNS)
    locations = [t["StorageDescriptor"]["Location"] for t in tables.values()]
    for location in locations:
        others = [o for o in locations if o != location]
        assert not any(o.startswith(location) for o in others), location
    for table in ("pr_series", "population"):
        assert "PartitionKeys" not in tables[table]
        assert not any(k.startswith("projection") for k in tables[table]["Parameters"])


def test_every_survey_of_the_stack_gets_tables(surveys_template: Template) -> None:
    tables = _tables(surveys_template)
    assert sorted(tables) == [
        "ce_observations",
        "ce_series",
        "cu_observations",
        "cu_series",
        "population",
        "pr_observations",
        "pr_series",
    ]
    cu = tables["cu_observations"]
    assert cu["Parameters"]["storage.location.template"] == (
        f"{TABLES}cu/observations/file=${{file}}/"
    )
    # A survey's own series columns are unknown before it is mirrored: the common ones.
    names = [c["Name"] for c in tables["cu_series"]["StorageDescriptor"]["Columns"]]
    assert names[0] == "series_id"
    assert "title" in names


def test_the_worker_creates_exactly_the_tables_the_stack_declares(
    surveys_template: Template,
) -> None:
    # With surveys=all the worker creates each survey's tables at run time (rearcquest.aws.catalog);
    # they must be what the stack would have declared for a survey it knew.
    declared = _tables(surveys_template)
    for survey in ("ce", "cu", "pr"):
        for table in survey_glue_tables(BLS, survey):
            assert table_input(table) == declared[table.name], table.name


def test_all_surveys_still_get_pr_tables(synth: Callable[[dict[str, str]], Templates]) -> None:
    template = synth({"fanOut": "true", "surveys": "all"})["Rearcquest"]
    assert sorted(_tables(template)) == ["population", "pr_observations", "pr_series"]


def test_workgroup_enforces_encrypted_results_and_a_scan_limit(
    default_template: Template, surveys_template: Template
) -> None:
    default_template.resource_count_is("AWS::Athena::WorkGroup", 1)
    _, group = one(default_template.to_json(), "AWS::Athena::WorkGroup", "AthenaWorkGroup")
    props = render(group["Properties"])
    assert props["Name"] == "Rearcquest"
    assert props["State"] == "ENABLED"
    config = props["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] == 1024 * 1024 * 1024
    assert config["PublishCloudWatchMetricsEnabled"] is True
    assert config["RequesterPaysEnabled"] is False
    assert config["EngineVersion"] == {"SelectedEngineVersion": ATHENA_ENGINE}
    assert config["ResultConfiguration"] == {
        "OutputLocation": f"s3://{RESULTS}/{ATHENA_RESULTS_PREFIX}",
        "EncryptionConfiguration": {"EncryptionOption": "SSE_S3"},
        "ExpectedBucketOwner": "${AWS::AccountId}",
    }
    _, other = one(surveys_template.to_json(), "AWS::Athena::WorkGroup", "AthenaWorkGroup")
    limit = other["Properties"]["WorkGroupConfiguration"]["BytesScannedCutoffPerQuery"]
    assert limit == 200 * 1024 * 1024


def test_results_bucket_expires_results_and_is_private(default_template: Template) -> None:
    doc = default_template.to_json()
    bucket_id, bucket = one(doc, "AWS::S3::Bucket", "AthenaResultsBucket")
    props = bucket["Properties"]
    assert render(props["BucketName"]) == RESULTS
    assert props["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]
    }
    assert props["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    rules = props["LifecycleConfiguration"]["Rules"]
    assert {"ExpirationInDays": ATHENA_RESULTS_DAYS, "Status": "Enabled"} in rules
    assert ATHENA_RESULTS_DAYS == 7
    assert "VersioningConfiguration" not in props
    (policy,) = [
        p
        for p in resources(doc, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    denies = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    assert {"Bool": {"aws:SecureTransport": "false"}} in [s["Condition"] for s in denies]


def test_named_queries_are_the_reports_sql(default_template: Template) -> None:
    doc = default_template.to_json()
    group_id, _ = one(doc, "AWS::Athena::WorkGroup", "AthenaWorkGroup")
    queries = {
        q["Properties"]["Name"]: q for q in resources(doc, "AWS::Athena::NamedQuery").values()
    }
    assert sorted(queries) == sorted(QUERY_NAMES)
    for query in named_queries():
        resource = queries[query.name]
        props = resource["Properties"]
        # The same text as rq sql --named and the DuckDB test run: one source.
        assert props["QueryString"] == named_query(query.name) == query.sql
        assert props["Database"] == "rearcquest"
        assert props["WorkGroup"] == {"Ref": group_id}
        assert props["Description"] == query.description
        assert group_id in resource["DependsOn"]
    for name in ("best_year", "series_population"):
        assert "file = 'pr.data.0.Current'" in queries[name]["Properties"]["QueryString"]


def _query_policy(template: Template) -> dict[str, dict[str, Any]]:
    _, policy = one(template.to_json(), "AWS::IAM::ManagedPolicy", "AthenaQueryPolicy")
    props = policy["Properties"]
    assert props["ManagedPolicyName"] == "RearcquestAthenaQuery"
    assert "Roles" not in props
    assert "Users" not in props
    statements = render(props["PolicyDocument"]["Statement"])
    return {s["Sid"]: s for s in statements}


def test_query_policy_runs_the_workgroup_and_reads_only_tables_and_results(
    default_template: Template,
) -> None:
    statements = _query_policy(default_template)
    assert set(statements) == {
        "RunQueriesInTheWorkGroup",
        "BrowseTheCatalog",
        "ReadTheTableDefinitions",
        "ListTheTables",
        "ReadTheTables",
        "WriteAndReadQueryResults",
        "ListQueryResults",
    }
    run = statements["RunQueriesInTheWorkGroup"]
    assert run["Resource"] == (
        "arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:workgroup/Rearcquest"
    )
    assert "athena:StartQueryExecution" in run["Action"]
    assert statements["BrowseTheCatalog"]["Resource"] == (
        "arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:datacatalog/AwsDataCatalog"
    )
    glue = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:"
    assert sorted(as_list(statements["ReadTheTableDefinitions"]["Resource"])) == [
        f"{glue}catalog",
        f"{glue}database/rearcquest",
        f"{glue}table/rearcquest/*",
    ]
    assert all(a.startswith("glue:Get") for a in statements["ReadTheTableDefinitions"]["Action"])
    assert statements["ReadTheTables"] == {
        "Sid": "ReadTheTables",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": f"{S3}{BLS}/tables/*",
    }
    assert statements["ListTheTables"]["Condition"] == {"StringLike": {"s3:prefix": "tables/*"}}
    assert statements["WriteAndReadQueryResults"]["Resource"] == (
        f"{S3}{RESULTS}/{ATHENA_RESULTS_PREFIX}*"
    )
    for statement in statements.values():
        for action in as_list(statement["Action"]):
            assert "*" not in action
        for resource in as_list(statement["Resource"]):
            assert resource != "*"
            # Nothing of the mirror outside tables/, nothing of the population bucket.
            if resource.startswith(f"{S3}{BLS}/"):
                assert resource == f"{S3}{BLS}/tables/*"
            assert "population-" not in resource


@pytest.mark.parametrize("role", ["ScheduledRole", "ReportRole"])
def test_no_function_may_read_the_query_results(default_template: Template, role: str) -> None:
    statements = role_statements(default_template.to_json(), role)
    everything = [r for s in statements.values() for r in as_list(s["Resource"])]
    assert not any("athena" in str(r) or "glue" in str(r) for r in everything)


def test_outputs_name_the_database_workgroup_results_and_policy(
    default_template: Template,
) -> None:
    outputs: Mapping[str, Any] = default_template.to_json()["Outputs"]
    assert outputs["GlueDatabaseName"]["Value"] == "rearcquest"
    assert outputs["AthenaWorkGroupName"]["Value"] == "Rearcquest"
    assert render(outputs["AthenaResultsBucketName"]["Value"]).startswith("${AthenaResultsBucket")
    assert render(outputs["AthenaQueryPolicyArn"]["Value"]).startswith("${AthenaQueryPolicy")


@pytest.mark.parametrize(
    "value", ["9", "2000000", "lots"], ids=["below-athena-minimum", "above-1tb", "nan"]
)
def test_scan_limit_is_checked(value: str) -> None:
    with pytest.raises(ValueError, match="'athenaScanLimitMb'"):
        InfraSettings.from_context({"contact": CONTACT, "athenaScanLimitMb": value}.get)


@pytest.mark.parametrize("surveys", ["pr,CU", "pr,c-u", "c.u"], ids=["upper", "dash", "dot"])
def test_a_survey_that_cannot_name_a_table_is_refused(surveys: str) -> None:
    with pytest.raises(ValueError, match=r"'surveys': survey .* cannot name an Athena table"):
        InfraSettings.from_context({"contact": CONTACT, "surveys": surveys}.get)


def test_database_name_follows_the_stack_name() -> None:
    settings = InfraSettings.from_context({"contact": CONTACT, "stackName": "Rq-Dev-2"}.get)
    assert settings.database_name == "rq_dev_2"
    assert settings.athena_scan_limit_mb == 1024
