"""Search the nearest neighbours of a stored field and print each hit with its compound and MOA.

    python examples/search_by_image.py --url http://127.0.0.1:8700 TRAIN_ID IMAGE_ID
    python examples/search_by_image.py --stack bioims-dev TRAIN_ID IMAGE_ID --exclude-tag compound:taxol

The train run's field index must be built (`bioims index build TRAIN_ID`, or startTrainingLoad).
Needs only `pip install "bioims[client]"`.
"""

import argparse

from bioims.client import deployment

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("train_id")
parser.add_argument("image_id", help="the query field")
parser.add_argument("-k", type=int, default=5)
parser.add_argument("--exclude-tag", action="append", default=[], help="e.g. the query's own compound tag")
parser.add_argument("--url", help="a `bioims serve` (http://127.0.0.1:8700)")
parser.add_argument("--stack", help="a deployed CloudFormation stack (bioims-dev)")
args = parser.parse_args()

bioims = deployment(url=args.url, stack=args.stack)

# Hits with an MOA annotation only, as the seed's search service filters them.
result = bioims.search.search(train_id=args.train_id, image_id=args.image_id, k=args.k,
                              exclude_tags=args.exclude_tag, require_moa=True)
print(f"{'rank':>4}  {'distance':>8}  {'plate':<12} {'well':<5} {'compound':<20} moa")
for hit in result["hits"]:
    print(f"{hit['rank']:>4}  {hit['distance']:8.4f}  {hit['plate'] or '':<12} {hit['well'] or '':<5} "
          f"{hit['compound'] or '':<20} {hit['moa'] or ''}")
print(f"search {result['search_id']}: {len(result['hits'])} hits in {result['ms']} ms")
