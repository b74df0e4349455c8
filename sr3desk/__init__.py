"""sr3desk: offline semantic search over your own documents, on the Search-R3 model."""

__version__ = "0.1.0"
