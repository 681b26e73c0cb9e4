"""Register plates from the seed's sourcePlateInfo manifests and wait until each is processed.

    python examples/ingest_manifests.py --url http://127.0.0.1:8700 plate1.json plate2.json
    python examples/ingest_manifests.py --stack bioims-dev s3://my-bucket/manifests/plate1.json

A manifest is a file:// or s3:// URI (or a local path) the service can read: under its ingest roots on
`bioims serve`, in the input bucket on AWS. Needs only `pip install "bioims[client]"`.
"""

import argparse
import time
from pathlib import Path

from bioims.client import deployment
from bioims.errors import Conflict

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("manifests", nargs="+", help="manifest URIs or local paths")
parser.add_argument("--url", help="a `bioims serve` (http://127.0.0.1:8700)")
parser.add_argument("--stack", help="a deployed CloudFormation stack (bioims-dev)")
args = parser.parse_args()

bioims = deployment(url=args.url, stack=args.stack)

executions = {}
for manifest in args.manifests:
    uri = Path(manifest).absolute().as_uri() if "://" not in manifest else manifest
    try:
        plate = bioims.images.populate_source_plate(uri)  # registers the plate, its wells and images
    except Conflict as e:  # registered before: nothing is changed
        print(f"{manifest}: {e}")
        continue
    print(f"{manifest}: plate {plate['plate_id']}, {plate['images']} images ({plate['invalid_images']} missing)")
    # inspect every image, validate the plate, make thumbnails: a workflow (Step Functions on AWS)
    executions[plate["plate_id"]] = bioims.images.inspect_plate(plate["plate_id"])

while executions:  # poll each workflow until it ends
    for plate_id, execution_id in list(executions.items()):
        execution = bioims.images.describe_execution(execution_id)
        if execution["status"] != "RUNNING":
            status = bioims.images.get_plate(plate_id)["status"]
            print(f"plate {plate_id}: workflow {execution['status']}, plate {status}")
            del executions[plate_id]
    time.sleep(1)
