"""CloudFormation definitions of the tables, derived from the PynamoDB models (the one source of truth).

``template.yaml`` holds the output of :func:`table_resources`; a unit test keeps the two identical, so a
key or index added to a model cannot be forgotten in the deployment.
"""

from __future__ import annotations

from typing import Any

from .tables import MODELS, Tables


def logical_id(attr: str) -> str:
    """``image_tags`` -> ``ImageTagsTable``."""
    return "".join(part.capitalize() for part in attr.split("_")) + "Table"


def _hash_first(key_schema: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(key_schema, key=lambda k: k["KeyType"] != "HASH")


def table_resources(prefix_parameter: str = "TablePrefix") -> dict[str, Any]:
    """``AWS::DynamoDB::Table`` resources (on-demand, point-in-time recovery, SSE) for every model,
    named ``${TablePrefix}<table>`` and tagged with the ``Env`` parameter."""
    tables = Tables("")
    resources: dict[str, Any] = {}
    for attr in MODELS:
        model = getattr(tables, attr)
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
        resources[logical_id(attr)] = {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain",
                                       "UpdateReplacePolicy": "Retain", "Properties": props}
    return resources
