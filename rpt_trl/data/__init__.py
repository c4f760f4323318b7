"""Documents to next-token examples: loading, the builder and its settings, templates, entropy, prepare."""
