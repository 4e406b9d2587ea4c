"""What a router or replica tells its operators beyond its metrics: traces across the tiers."""
