"""Evaluation of embeddings and profiles: NSC / NSCB accuracy, mAP, similarity matrices, the HTML report."""
