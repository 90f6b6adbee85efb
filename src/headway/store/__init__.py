"""The Redis-compatible store that holds every head's GCS: addresses and clients, the
managed store's config, processes and TLS files, and the cloud record that says where it all
runs. Imports ``hosts`` and below."""
