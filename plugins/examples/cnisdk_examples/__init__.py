"""Example plugins for cnisdk; each module is one plugin, registered as its own entry point."""
