"""The pages, one module each; GET only: the UI never writes."""
