"""Model and dataset card templates, shipped as package data (installed as `rpt_trl.model_card_templates`)."""
