"""What a worker does: git, the trusted hook, the sandbox, running within limits, hook outcomes,
mail and webhook deliveries, riding out a database outage."""
