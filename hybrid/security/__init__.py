"""Who may reach the deployment and with what: API keys (``keys``)."""
