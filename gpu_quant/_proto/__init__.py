"""Generated gRPC stubs (gpu_quant/_proto_build.py); not committed."""
