"""Ray job entrypoints: `python -m jobs.<stage> --config cluster/configs/<x>.yaml` (or `ray job submit ... -- python -m jobs.<stage>`)."""
