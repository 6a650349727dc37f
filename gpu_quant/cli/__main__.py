"""`python -m gpu_quant.cli ...` is `gq ...`."""
from .app import main

main()
