"""bioims: image embeddings and phenotype similarity search for high-content screening."""

__version__ = "0.1.0"
