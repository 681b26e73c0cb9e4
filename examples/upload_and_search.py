"""Upload a field of your own (one TIFF or PNG per channel) and find the screen's nearest fields.

    python examples/upload_and_search.py --url http://127.0.0.1:8700 TRAIN_ID \\
        DAPI=w1.tif Tubulin=w2.tif Actin=w4.tif
    python examples/upload_and_search.py --stack bioims-dev TRAIN_ID DAPI=w1.tif Tubulin=w2.tif Actin=w4.tif \\
        --flatfield-plate PLATE_ID -k 10

The search service preprocesses the upload as the run's spec does (illumination correction with a
plate's flat-fields if --flatfield-plate is given, normalization, nucleus segmentation, crops), embeds
it with the run's ONNX model and searches the run's field index. Needs only `pip install "bioims[client]"`.
"""

import argparse
import base64
from pathlib import Path

from bioims.client import deployment

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("train_id")
parser.add_argument("channels", nargs="+", metavar="CHANNEL=FILE", help="every channel of the run's spec")
parser.add_argument("-k", type=int, default=5)
parser.add_argument("--flatfield-plate", help="correct illumination with this plate's flat-fields")
parser.add_argument("--url", help="a `bioims serve` (http://127.0.0.1:8700)")
parser.add_argument("--stack", help="a deployed CloudFormation stack (bioims-dev)")
args = parser.parse_args()

images = {}
for pair in args.channels:
    channel, sep, path = pair.partition("=")
    if not sep:
        parser.error(f"{pair!r}: give CHANNEL=FILE")
    images[channel] = base64.b64encode(Path(path).read_bytes()).decode("ascii")  # JSON carries base64

bioims = deployment(url=args.url, stack=args.stack)
result = bioims.search.search(train_id=args.train_id, images=images, k=args.k, flatfield_plate=args.flatfield_plate)
print(f"{'rank':>4}  {'distance':>8}  {'image':<24} {'plate':<12} {'well':<5} {'compound':<20} moa")
for hit in result["hits"]:
    print(f"{hit['rank']:>4}  {hit['distance']:8.4f}  {hit['id']:<24} {hit['plate'] or '':<12} "
          f"{hit['well'] or '':<5} {hit['compound'] or '':<20} {hit['moa'] or ''}")
print(f"search {result['search_id']}: {len(result['hits'])} hits in {result['ms']} ms")
