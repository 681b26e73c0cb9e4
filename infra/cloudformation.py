"""CloudFormation definitions of the tables, derived from the PynamoDB models (the one source of truth).

Each Lambda service's template (``services/<name>/template.yaml``, written by ``infra/render.py``) holds
the output of :func:`table_resources` for its own table set; ``infra/data.yaml`` (the data stack of
``template.yaml``) holds the others' (:data:`SHARED_STACK_TABLES`: the search service's, which runs as a
container of the root stack, and the local runner's; ``python infra/cloudformation.py`` prints
that block). Unit tests keep both identical to the models, so a key or index added to a model cannot be
forgotten in the deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collections.abc import Iterable

from bioims.store.tables import Database, TableSet


def logical_id(attr: str) -> str:
    """``image_tags`` -> ``ImageTagsTable``."""
    return "".join(part.capitalize() for part in attr.split("_")) + "Table"


def _hash_first(key_schema: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(key_schema, key=lambda k: k["KeyType"] != "HASH")


def table_resources(table_sets: Iterable[type[TableSet]], prefix_parameter: str = "TablePrefix") -> dict[str, Any]:
    """``AWS::DynamoDB::Table`` resources (on-demand, point-in-time recovery, SSE) for every model of
    ``table_sets``, named ``${TablePrefix}<table>`` and tagged with the ``Env`` parameter."""
    database = Database("", client=_NoClient())
    resources: dict[str, Any] = {}
    for table_set in table_sets:
        for attr, model in zip(table_set.MODELS, table_set(database).models()):
            resources[logical_id(attr)] = _table(model, prefix_parameter)
    return resources


class _NoClient:
    """Stands for a botocore client where only the models' schemas are read (no call is made)."""


def _table(model: Any, prefix_parameter: str) -> dict[str, Any]:
    schema = model._get_schema()
    props: dict[str, Any] = {
        "TableName": {"Fn::Sub": f"${{{prefix_parameter}}}{model.Meta.table_name}"},
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": sorted(schema["attribute_definitions"], key=lambda a: a["AttributeName"]),
        "KeySchema": _hash_first(schema["key_schema"]),
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
        "Tags": [{"Key": "bioims:env", "Value": {"Ref": "Env"}}],
    }
    if schema["global_secondary_indexes"]:
        props["GlobalSecondaryIndexes"] = [
            {"IndexName": gsi["index_name"], "KeySchema": _hash_first(gsi["key_schema"]),
             "Projection": gsi["projection"]}
            for gsi in schema["global_secondary_indexes"]
        ]
    return {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
            "Properties": props}


SHARED_STACK_TABLES = ("search", "runner")
"""The owners whose tables ``infra/data.yaml`` holds (the Lambda services' are in their own templates)."""


def tables_yaml(indent: int = 2) -> str:
    """The table resources as the YAML block of ``infra/data.yaml`` (under ``Resources:``)."""
    import yaml

    from bioims.runtime import table_sets

    sets = [t for owner, t in table_sets().items() if owner in SHARED_STACK_TABLES]
    text = yaml.safe_dump(table_resources(sets), sort_keys=False, default_flow_style=False)
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def load_template(path: str | Path) -> dict[str, Any]:
    """A CloudFormation/SAM template (YAML or JSON) with its short-form tags (``!Ref``, ``!Sub``,
    ``!GetAtt``, ...) read as their long forms (``{"Ref": ...}``, ``{"Fn::Sub": ...}``)."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if suffix == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {"Ref": value} if suffix == "Ref" else {f"Fn::{suffix}": value}

    _Loader.add_multi_constructor("!", _tag)
    return yaml.load(Path(path).read_text(), Loader=_Loader)


if __name__ == "__main__":  # python infra/cloudformation.py  -> the block to paste into infra/data.yaml
    print(tables_yaml(), end="")
