"""The gateway's benchmark: `bench/run` (or `python -m bench`); see bench/README.md."""
