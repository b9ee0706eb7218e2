"""Training recipes for the embedded models (torch). The service never imports this package."""
