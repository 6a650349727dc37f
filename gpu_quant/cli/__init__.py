"""The `gq` command: the SDK from a terminal (click + rich). Entry point: gpu_quant.cli.app:main."""
