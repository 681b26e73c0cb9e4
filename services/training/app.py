"""The training service on AWS: HTTP routes (API Gateway) and the `invoke` Lambda function.

Routes and the `{"method": ...}` protocol are generated from `bioims.contract`; the container
(DynamoDB tables, S3, the Step Functions runner) is built from the environment on first use.
See README.md for the API.
"""

from functools import partial

from bioims.api.chalice_app import create_app, lazy_container
from bioims.runtime import aws

app = create_app("training", lazy_container(partial(aws, service="training")))
invoke = app.invoke  # the `invoke` Lambda function's handler (`app.invoke`)
