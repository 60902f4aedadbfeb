"""Links between nodes: sans-IO protocol, membership and transports (the cluster layer)."""
