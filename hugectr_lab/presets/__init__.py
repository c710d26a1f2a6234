"""Ready-made configs (the demo DCN) shipped with the package."""
