"""First-party tiers shipped with the core distribution."""
