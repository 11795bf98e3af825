"""armdata.beam_jobs."""
