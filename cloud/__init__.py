"""The Ray Serve cloud tier (the full model on GPU). Built by the cloud tier issue."""
