"""The Vigil server: configuration, store, ingest and the vigil admin CLI."""
