"""Export a train run's field embeddings, with plate, well, compound and MOA, to one Parquet file.

    python examples/export_embeddings.py --url http://127.0.0.1:8700 TRAIN_ID fields.parquet
    python examples/export_embeddings.py --stack bioims-dev --via lambda TRAIN_ID fields.parquet

One row per embedded field: Metadata_* columns (as pycytominer and CellProfiler name them) and emb_000,
emb_001, ... (float32), ready for pandas, polars or pycytominer. Needs `pip install "bioims[client]" pyarrow`.
"""

import argparse

import pyarrow as pa
import pyarrow.parquet as pq

from bioims.client import deployment

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("train_id")
parser.add_argument("output", help="the Parquet file to write")
parser.add_argument("--url", help="a `bioims serve` (http://127.0.0.1:8700)")
parser.add_argument("--stack", help="a deployed CloudFormation stack (bioims-dev)")
parser.add_argument("--via", choices=["http", "lambda"], default="http", help="with --stack: how to call it")
args = parser.parse_args()

bioims = deployment(url=args.url, stack=args.stack, via=args.via)

rows, vectors = [], []
for plate in bioims.embedding.list_plate_embeddings(args.train_id):  # the plates the run has embedded
    for image in bioims.images.get_images_by_plate_id(plate["plate_id"]):  # their fields, with metadata
        field = bioims.embedding.get_image_embedding(image["image_id"], args.train_id)
        if field["embedding"] is None:  # an empty (no cells) or failed field
            continue
        meta = image["metadata"] or {}
        rows.append({"Metadata_ImageId": image["image_id"], "Metadata_Plate": image["plate_source_id"],
                     "Metadata_Well": image["well_source_id"], "Metadata_Field": image["field_source_id"],
                     "Metadata_Compound": meta.get("compound"), "Metadata_Concentration": meta.get("concentration"),
                     "Metadata_MoA": meta.get("moa"), "Metadata_Cells": field["cells"]})
        vectors.append(field["embedding"])

if not rows:
    parser.exit(1, f"run {args.train_id} has no embedded fields\n")
columns = {name: [row[name] for row in rows] for name in rows[0]}
columns |= {f"emb_{d:03d}": pa.array([v[d] for v in vectors], pa.float32()) for d in range(len(vectors[0]))}
pq.write_table(pa.table(columns), args.output)
print(f"{args.output}: {len(rows)} fields x {len(vectors[0])} dims from "
      f"{len({r['Metadata_Plate'] for r in rows})} plates of run {args.train_id}")
