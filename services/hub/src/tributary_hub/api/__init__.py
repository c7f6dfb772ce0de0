"""The hub's HTTP routers (adapters over the domain services)."""
