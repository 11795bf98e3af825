"""armdata.pipeline."""
