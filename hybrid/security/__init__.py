"""Security: TLS on every hop (``tls``), the certificates it uses (``certs``), and who may use the deployment
with what: API keys (``keys``)."""
