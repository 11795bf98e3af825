"""Data contracts: records that cross stages, the source-file schema, templates. No heavy imports here."""
