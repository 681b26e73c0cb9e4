"""The SDK against a deployed stack, without a network: stack discovery from CloudFormation outputs
(moto), the transports it builds, and SigV4 signatures recomputed by botocore."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import requests

from bioims.client import HttpTransport, LambdaTransport, SigV4, Stack, aws_session
from bioims.errors import BioimsError, NotFound

URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/api"


def _create(cloudformation, name: str, outputs: dict[str, str]) -> None:
    template = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def cloudformation(aws_env, monkeypatch):
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        yield boto3.client("cloudformation", region_name="eu-west-1")


def test_discovers_nested_and_separately_deployed_services(cloudformation) -> None:
    _create(cloudformation, "bioims-dev", {
        "TagsApiUrl": f"{URL}/tags", "TagsFunction": "bioims-dev-tags-invoke",
        "ArtifactApiUrl": f"{URL}/artifact", "ArtifactFunction": "bioims-dev-artifact-invoke",
        "SearchUrl": "https://search.execute-api.eu-west-1.amazonaws.com", "ArtifactBucketName": "bucket-1"})
    # training deployed alone (make deploy SERVICE=training): its own stack's outputs
    _create(cloudformation, "bioims-dev-training", {"EndpointURL": f"{URL}/training",
                                                    "InvokeFunctionName": "bioims-dev-training-invoke"})
    stack = Stack.discover("bioims-dev", aws_session())
    assert stack.region == "eu-west-1"
    assert dict(stack.urls) == {"tags": f"{URL}/tags", "artifact": f"{URL}/artifact", "training": f"{URL}/training",
                                "search": "https://search.execute-api.eu-west-1.amazonaws.com"}
    assert dict(stack.functions) == {"tags": "bioims-dev-tags-invoke", "artifact": "bioims-dev-artifact-invoke",
                                     "training": "bioims-dev-training-invoke"}
    assert stack.outputs["ArtifactBucketName"] == "bucket-1"

    http = stack.connect(aws_session())
    transport = http.tags.transport
    assert isinstance(transport, HttpTransport) and transport.base_url == f"{URL}/tags"
    assert isinstance(transport.session.auth, SigV4) and transport.session.auth.region == "eu-west-1"
    with pytest.raises(BioimsError, match="has no embedding service"):
        _ = http.embedding

    by_lambda = stack.connect(aws_session(), via="lambda")
    assert isinstance(by_lambda.training.transport, LambdaTransport)
    assert by_lambda.training.transport.function_name == "bioims-dev-training-invoke"
    assert isinstance(by_lambda.search.transport, HttpTransport)  # search is HTTP either way


def test_a_missing_stack_or_profile_is_one_clear_error(cloudformation) -> None:
    with pytest.raises(NotFound, match="no CloudFormation stack 'bioims-nope' in eu-west-1"):
        Stack.discover("bioims-nope", aws_session())
    with pytest.raises(BioimsError, match="AWS profile 'no-such-profile' not found"):
        aws_session("no-such-profile")


def verify(method: str, url: str, headers: dict[str, str], body: bytes, credentials, region: str) -> bool:
    """What API Gateway does: recompute the signature over the headers the request says it signed."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    scheme, _, fields = headers["Authorization"].partition(" ")
    assert scheme == "AWS4-HMAC-SHA256"
    parts = dict(p.strip().split("=", 1) for p in fields.split(","))
    signed = parts["SignedHeaders"].split(";")
    lower = {"host": urlsplit(url).netloc} | {k.lower(): v for k, v in headers.items()}  # Host: as received
    request = AWSRequest(method=method, url=url, data=body, headers={h: lower[h] for h in signed})
    request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(credentials, "execute-api", region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return parts["Credential"].startswith(f"{credentials.access_key}/") and expected == parts["Signature"]


def test_sigv4_signatures_verify_with_botocore() -> None:
    from botocore.credentials import Credentials

    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")
    auth = SigV4(credentials, "eu-west-1")
    body = b'{"value": "compound:taxol"}'
    prepared = auth(requests.Request("POST", f"{URL}/tags/tags?x=1&a=b c", data=body,
                                     headers={"Content-Type": "application/json"}).prepare())
    headers = dict(prepared.headers)
    assert headers["X-Amz-Security-Token"] == "session-token"
    assert verify("POST", prepared.url, headers, body, credentials, "eu-west-1")
    assert not verify("POST", prepared.url, headers, b'{"value": "compound:other"}', credentials, "eu-west-1")
    assert not verify("POST", prepared.url, headers, body, credentials, "us-east-1")
    wrong = Credentials("AKIDEXAMPLE", "another-secret")
    assert not verify("POST", prepared.url, headers, body, wrong, "eu-west-1")
