"""Streaming view pairs from webdataset shards into tensors: image prep, split by object, loaders."""
