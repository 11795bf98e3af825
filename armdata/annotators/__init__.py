"""armdata.annotators."""
