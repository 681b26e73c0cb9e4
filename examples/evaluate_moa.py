"""How well does a train run's search recover mechanism of action? Not-same-compound 1-NN accuracy.

    python examples/evaluate_moa.py --url http://127.0.0.1:8700 TRAIN_ID
    python examples/evaluate_moa.py --stack bioims-dev TRAIN_ID

For every embedded field with an MOA, the search service finds its nearest neighbour among the fields of
other compounds that have an MOA (the query's own compound excluded, as in Ljosa et al. 2013); the field
counts as correct when that neighbour's MOA is the query's. Prints the accuracy per MOA and overall. The
run's field index must be built. Needs only `pip install "bioims[client]"`.
"""

import argparse
from collections import Counter

from bioims.client import deployment
from bioims.errors import NotFound

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("train_id")
parser.add_argument("--url", help="a `bioims serve` (http://127.0.0.1:8700)")
parser.add_argument("--stack", help="a deployed CloudFormation stack (bioims-dev)")
args = parser.parse_args()

bioims = deployment(url=args.url, stack=args.stack)

right, total = Counter(), Counter()
for plate in bioims.embedding.list_plate_embeddings(args.train_id):
    for image in bioims.images.get_images_by_plate_id(plate["plate_id"]):
        meta = image["metadata"] or {}
        if not meta.get("moa"):
            continue
        try:
            nearest = bioims.search.search(train_id=args.train_id, id=image["image_id"], k=1, require_moa=True,
                                           exclude_tags=[f"compound:{meta['compound']}"])["hits"]
        except NotFound:  # a field without cells has no embedding, so it is not in the index
            continue
        if nearest:
            total[meta["moa"]] += 1
            right[meta["moa"]] += nearest[0]["moa"] == meta["moa"]

if not total:
    parser.exit(1, f"no field of run {args.train_id} has a neighbour of another compound with an MOA\n")
for moa in sorted(total):
    print(f"{moa:<32} {right[moa]:>5}/{total[moa]:<5} {right[moa] / total[moa]:6.1%}")
print(f"NSC 1-NN accuracy (fields of run {args.train_id}): {sum(right.values())}/{sum(total.values())} "
      f"= {sum(right.values()) / sum(total.values()):.1%}")
