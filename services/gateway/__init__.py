"""The WebSocket push gateway and web dashboard (design document channels market_data,
calc_result, task_status, alert), fed from the same Redis announcements, pub/sub channels and
streams as the gRPC side, so any number of gateways can run behind a load balancer."""
