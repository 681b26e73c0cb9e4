"""Register an embedding spec, train its models with compound hold-out, and wait for them.

    python examples/train_holdout.py --url http://127.0.0.1:8700 spec.json --holdout folds
    python examples/train_holdout.py --stack bioims-dev spec.json --holdout compound --epochs 30

spec.json is an embedding spec (docs/services/training.md): name, input shape and channels, nucleus
channel, crop size, embedding length, optional training settings. `--holdout folds` trains K models that
each never see one compound per MOA (K = the spec's training.folds); `compound` one model per left-out
compound; `none` one model on everything. The train workflow first preprocesses the fields of the spec's
compatible plates that are not yet. Needs only `pip install "bioims[client]"`.
"""

import argparse
import json
import time
from pathlib import Path

from bioims.client import deployment
from bioims.errors import Conflict

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("spec", type=Path, help="the embedding spec (JSON)")
parser.add_argument("--holdout", choices=["none", "compound", "folds"], default="folds")
parser.add_argument("--epochs", type=int, help="override the spec's epochs")
parser.add_argument("--url", help="a `bioims serve` (http://127.0.0.1:8700)")
parser.add_argument("--stack", help="a deployed CloudFormation stack (bioims-dev)")
args = parser.parse_args()

bioims = deployment(url=args.url, stack=args.stack)
spec = json.loads(args.spec.read_text())
try:
    bioims.training.create_embedding(spec)  # validated; every default filled in
    print(f"spec {spec['name']} registered")
except Conflict:  # registered before (a spec is immutable once it has runs)
    print(f"spec {spec['name']} exists")
plates = bioims.training.get_compatible_plates(spec["name"])
print(f"{len(plates)} compatible plates: {', '.join(p['source_id'] for p in plates)}")

# The runs of this hold-out mode (created or found again) and one workflow training those not complete.
started = bioims.training.train(spec=spec["name"], holdout=args.holdout, epochs=args.epochs)
print(f"workflow {started['execution_id']}: {len(started['train_ids'])} runs")

while (execution := bioims.images.describe_execution(started["execution_id"]))["status"] == "RUNNING":
    done = [bioims.training.get_training(t) for t in started["train_ids"]]
    print(f"  {sum(j['status'] == 'complete' for j in done)}/{len(done)} runs complete", flush=True)
    time.sleep(5)
print(f"workflow {execution['status']}")

for train_id in started["train_ids"]:
    run = bioims.training.get_training(train_id)
    if run["status"] != "complete":
        print(f"{train_id}: {run['status']}: {run['error'] or 'see bioims.training.get_training_job_info'}")
        continue
    metrics = run["metrics"] or {}
    nsc = metrics.get("best_validation_nsc")
    print(f"{train_id}: complete, holds out {', '.join(run['holdout']) or 'nothing'}; best epoch "
          f"{metrics.get('best_epoch')}, validation NSC {'n/a' if nsc is None else f'{nsc:.3f}'}; "
          f"model {run['model_uris']['onnx']}")
