"""The demo, the tiny world and the embedded model: used by `rpt-trl demo`, the tiny recipe and the tests."""
