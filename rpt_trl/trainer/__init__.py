"""RPT training: config, trainer, dynamic sampling, resume, generation engines, training scripts."""
