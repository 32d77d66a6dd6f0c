"""Configuration in: config files and flags turned into plain values before the core sees them."""
